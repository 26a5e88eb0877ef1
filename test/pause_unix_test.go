//go:build unix

package test

import (
	"os"
	"syscall"
)

// pauseProcess stops p in place (SIGSTOP) and reports that it could;
// resumeProcess lets it run again.
func pauseProcess(p *os.Process) bool { return p.Signal(syscall.SIGSTOP) == nil }

func resumeProcess(p *os.Process) { p.Signal(syscall.SIGCONT) }
