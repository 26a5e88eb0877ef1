package loop

import (
	"testing"
	"time"
)

func TestAcceptPace(t *testing.T) {
	var a AcceptPace
	want := []time.Duration{5, 10, 20, 40, 80, 160, 320, 640, 1000, 1000}
	for i, w := range want {
		if got := a.Next(); got != w*time.Millisecond {
			t.Fatalf("failure %d: got %v, want %v", i+1, got, w*time.Millisecond)
		}
	}
	a.Reset()
	if got := a.Next(); got != acceptDelayMin {
		t.Errorf("after reset: got %v, want %v", got, acceptDelayMin)
	}
}
