//go:build unix

package test

import (
	"os"
	"strings"
	"syscall"
)

// A fuzzing worker (go test -fuzz starts them) talks to its coordinator over
// descriptors 3, 4 and 5, which it inherits without close-on-exec: every gate
// and redis-server it starts would hold them too. A worker stopped hard (the
// coordinator kills one still inside an input when -fuzztime ends) then
// leaves those children holding its pipes, and the coordinator waits for
// them to close, for ever (seen in .ci/run on FuzzPathsAgree). Marked
// close-on-exec, the descriptors stay the worker's alone.
func init() {
	for _, a := range os.Args[1:] {
		if a == "-test.fuzzworker" || strings.HasPrefix(a, "-test.fuzzworker=") {
			for fd := 3; fd <= 5; fd++ {
				syscall.CloseOnExec(fd)
			}
			return
		}
	}
}
