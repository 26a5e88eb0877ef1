//go:build !unix

package proxy

import "time"

// processCPU: no getrusage here, so benchmarks leave out cpu-ns/op.
func processCPU() (time.Duration, bool) { return 0, false }
