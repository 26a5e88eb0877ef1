//go:build unix

package sessions_test

import (
	"syscall"
	"time"
)

// processCPU returns this process's user plus system CPU time, and true.
// Benchmarks report it per operation: on a shared machine it varies far
// less than the wall time.
func processCPU() (time.Duration, bool) {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0, false
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), true
}
