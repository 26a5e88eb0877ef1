package proc

import "syscall"

// childAttr puts a child in its own process group (so it is stopped with
// its children) and has the kernel kill it if the harness dies first.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
