//go:build !linux

package localredis

import "syscall"

// dieWithParent has no way to tie a child's life to its parent here.
func dieWithParent() *syscall.SysProcAttr { return nil }
