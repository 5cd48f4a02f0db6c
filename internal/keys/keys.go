// Package keys names every Redis key redisrpc uses, and places them on Redis
// Cluster's hash slots: every key that belongs to one request list shares
// that list's slot, so that scripts and multi-key commands work on a cluster.
package keys

import (
	"strconv"
	"strings"
)

// Slots is the number of hash slots of Redis Cluster.
const Slots = 16384

// MaxShards bounds the lists a service may be spread over.
const MaxShards = 1024

// Slot returns the hash slot of key as Redis Cluster computes it: CRC16
// (XMODEM) of the key, or of its hash tag when it has one (see hashed).
func Slot(key string) int { return int(crc16(hashed(key))) % Slots }

// hashed returns the part of key that Redis hashes: the text between the
// first { and the first } after it when that is not empty, else all of key.
func hashed(key string) string {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			return key[open+1 : open+1+end]
		}
	}
	return key
}

// Tag returns a prefix that puts any key starting with it in name's slot,
// and that no other name shares, so that distinct queues have distinct keys:
// {name} where name has no '}' (and so no hash tag); else {t}name, with t
// name's hash tag where it has one, or where it has none, since no hash tag
// can hold a '}', a tag made from name whose CRC lands in the same slot,
// found by search. The first '}' of a tag ends its hash tag, so that the
// part after it tells the forms and the names apart: "X" has {X}, "{X}" has
// {X}{X}. Client and server compute the same tag from the same name.
func Tag(name string) string {
	if !strings.Contains(name, "}") {
		return "{" + name + "}"
	}
	if t := hashed(name); t != name {
		return "{" + t + "}" + name
	}
	base := strings.ReplaceAll(name, "}", "") + "~"
	want := Slot(name)
	for k := 0; ; k++ {
		tag := base + strconv.Itoa(k)
		if int(crc16(tag))%Slots == want {
			return "{" + tag + "}" + name
		}
	}
}

// Shards returns the request lists of queue spread over n shards (n is
// clamped to 1..MaxShards): queue itself, so that classic clients keep
// working, and n-1 lists whose hash slots lie each in another of n equal
// parts of the slot space. A cluster whose masters own equal ranges of
// slots, as redis-cli --cluster create makes them, then has its shards on
// different masters. Client and server compute the same names.
//
// Shard i is {queue#i.k} for the first k that lands in a free part, or,
// where queue holds a '}', which would end that tag early, {q#i.k}queue with
// q the queue without its braces.
func Shards(queue string, n int) []string {
	n = min(max(n, 1), MaxShards)
	names := []string{queue}
	taken := make([]bool, n)
	taken[Slot(queue)*n/Slots] = true
	inner, outer := queue, ""
	if strings.Contains(queue, "}") {
		inner, outer = strings.NewReplacer("{", "", "}", "").Replace(queue), queue
	}
	for part := 0; part < n; part++ {
		if taken[part] {
			continue
		}
		prefix := inner + "#" + strconv.Itoa(len(names)) + "."
		for k := 0; ; k++ {
			tag := prefix + strconv.Itoa(k)
			if int(crc16(tag))%Slots*n/Slots == part {
				names = append(names, "{"+tag+"}"+outer)
				break
			}
		}
	}
	return names
}

// Processing is the list of requests the server id has taken from list in
// at-least-once mode and not yet answered.
func Processing(list, id string) string { return Tag(list) + ":processing:" + id }

// crcTable is CRC16-CCITT (XMODEM), polynomial 0x1021, as Redis Cluster uses.
var crcTable = func() (t [256]uint16) {
	for i := range t {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		t[i] = crc
	}
	return t
}()

func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crcTable[byte(crc>>8)^s[i]]
	}
	return crc
}

// Leases is the sorted set of the servers of list, scored by when each
// one's lease runs out (Unix ms, Redis' clock).
func Leases(list string) string { return Tag(list) + ":leases" }

// Wake is where a server pushes tokens to end its own waiting pops on list.
func Wake(list, id string) string { return Tag(list) + ":wake:" + id }

// Services is the index of queues with servers: a sorted set of queue names
// scored by their last beat (Unix ms, a server's clock).
const Services = "redisrpc:services"

// Server is where the server id of queue publishes what it is and what it
// has done, with the TTL of its lease.
func Server(queue, id string) string { return Tag(queue) + ":server:" + id }

// Inbox is the list of requests meant for the server id of queue alone
// (CallAll).
func Inbox(queue, id string) string { return Tag(queue) + ":inbox:" + id }

// Deliveries counts, by SHA-1 of the request, the deliveries of requests of
// list that were given back after their server stopped before answering.
func Deliveries(list string) string { return Tag(list) + ":deliveries" }

// Answered is the key under which a server that keeps answers (WithDedupe)
// keeps the response to the request taken from list with response queue
// rq and id: in list's slot, and one of its own for each pair, since rq's
// length comes first. AnsweredPrefix(list) + the rest is the same key, for
// scripts.
func Answered(list, rq, id string) string {
	return AnsweredPrefix(list) + strconv.Itoa(len(rq)) + ":" + rq + id
}

// AnsweredPrefix is what every Answered key of list starts with.
func AnsweredPrefix(list string) string { return Tag(list) + ":answered:" }

// Dead is the list of dead letters of list: requests delivered too often.
func Dead(list string) string { return Tag(list) + ":dead" }

// Reply returns the name of a client's own response list of queue, ending
// in suffix: inside the namespace <queue>:rpc:, and, where a hash tag can
// put it there, in the queue's hash slot, so that a server can push an
// answer and remove its request from a processing list of that slot at once.
func Reply(queue, suffix string) string {
	plain := queue + ":rpc:" + suffix
	if Slot(plain) == Slot(queue) {
		return plain
	}
	tagged := queue + ":rpc:" + Tag(queue) + suffix
	if Slot(tagged) == Slot(queue) && len(tagged)-len(queue)-len(":rpc:") <= 200 {
		return tagged
	}
	return plain
}
