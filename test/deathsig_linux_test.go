//go:build linux

package test

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill cmd's process when the test process
// that started it dies, however it dies: a fuzzing worker the coordinator
// kills mid-input runs no cleanup, and its gates and redis-servers would
// live on, orphaned.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
