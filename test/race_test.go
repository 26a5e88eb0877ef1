//go:build race

package test

// The race detector makes the test process several times as costly in
// CPU; see parallelDefault.
func init() { raceDetector = true }
