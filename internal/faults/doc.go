// Package faults holds the fault tests of redisrpc: servers killed mid-call,
// Redis killed under load, vanished clients, unreachable Redis, ACL users, a
// soak, and hostile input. It has no code of its own.
package faults
