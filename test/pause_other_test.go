//go:build !unix

package test

import "os"

// pauseProcess cannot stop a process in place without SIGSTOP.
func pauseProcess(p *os.Process) bool { return false }

func resumeProcess(p *os.Process) {}
