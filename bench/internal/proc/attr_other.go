//go:build unix && !linux

package proc

import "syscall"

// childAttr puts a child in its own process group. Only Linux can have the
// kernel kill it when the harness dies; elsewhere the harness's own
// clean-up on exit and on Ctrl-C is all there is.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
