package localredis

import "syscall"

// dieWithParent makes a server started for tests end with the process that
// started it, even when that process ends without stopping it.
func dieWithParent() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
