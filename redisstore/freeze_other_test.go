//go:build !unix

package redisstore_test

import (
	"os"
	"testing"
)

// freeze skips the test: stopping a process in place needs SIGSTOP.
func freeze(t *testing.T, p *os.Process) {
	t.Helper()
	t.Skip("freezing redis-server needs SIGSTOP (Unix only)")
}

func thaw(p *os.Process) {}
