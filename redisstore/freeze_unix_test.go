//go:build unix

package redisstore_test

import (
	"os"
	"syscall"
	"testing"
)

// freeze stops p (SIGSTOP): a server that holds its connections open and
// never answers. thaw undoes it.
func freeze(t *testing.T, p *os.Process) { p.Signal(syscall.SIGSTOP) }

func thaw(p *os.Process) { p.Signal(syscall.SIGCONT) }
