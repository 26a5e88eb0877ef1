package exchange

import (
	"errors"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// TestExchangeFailureKinds: the errors the engines meet map to the kinds
// (and so the answers and labels) docs/forwarding.md lists.
func TestExchangeFailureKinds(t *testing.T) {
	for _, tt := range []struct {
		name   string
		e      *Error
		kind   string
		status int
	}{
		{"dial refused", ClassifyConnect(errors.New("connection refused")), "connect", 502},
		{"dial timeout", ClassifyConnect(os.ErrDeadlineExceeded), "timeout", 504},
		{"pool full until the deadline", ClassifyConnect(ErrPoolTimeout), "timeout", 504},
		{"pool closed", ClassifyConnect(ErrPoolClosed), "connect", 502},
		{"closed before answering", Classify(errors.Join(ErrNoResponse, io.EOF)), "reset", 502},
		{"head too large", Classify(h1.ErrHeadTooLarge), "protocol", 502},
		{"malformed head", Classify(fmt.Errorf("%w: x", h1.ErrBadResponse)), "protocol", 502},
		{"unasked 101", Classify(ErrUnaskedSwitch), "protocol", 502},
		{"waited too long", Classify(os.ErrDeadlineExceeded), "timeout", 504},
		{"body cut short", Classify(io.ErrUnexpectedEOF), "reset", 502},
		{"already classed", Classify(fmt.Errorf("wrapped: %w", Failure(FailConnect, nil))), "connect", 502},
	} {
		status, _ := tt.e.Kind.Answer()
		if tt.e.Kind.String() != tt.kind || status != tt.status {
			t.Errorf("%s: got %s %d, want %s %d", tt.name, tt.e.Kind, status, tt.kind, tt.status)
		}
	}
}

// TestExchangeRules: framing, reuse and retry as docs/forwarding.md states
// them.
func TestExchangeRules(t *testing.T) {
	cl := h1.Framing{Length: 5}
	if m := ResponseBodyMode(200, true, cl); m != BodyNone {
		t.Errorf("HEAD: %v", m)
	}
	for _, st := range []int{204, 304} {
		if m := ResponseBodyMode(st, false, cl); m != BodyNone {
			t.Errorf("%d: %v", st, m)
		}
	}
	if m := ResponseBodyMode(200, false, h1.Framing{Length: -1}); m != BodyUntilClose || !ChunkedForClient(m) {
		t.Errorf("no length: %v", m)
	}
	if m := ResponseBodyMode(200, false, h1.Framing{Length: -1, Chunked: true}); m != BodyChunked {
		t.Errorf("chunked: %v", m)
	}
	for st, want := range map[int]bool{100: true, 102: true, 103: true, 200: false} {
		if skip, err := InterimResponse(st); skip != want || err != nil {
			t.Errorf("interim %d: %v %v", st, skip, err)
		}
	}
	if _, err := InterimResponse(101); err == nil {
		t.Error("an unasked 101 passed")
	}
	if !BufferWhole(BodyFixed, MaxBufferedBody) || BufferWhole(BodyFixed, MaxBufferedBody+1) || BufferWhole(BodyChunked, 0) {
		t.Error("BufferWhole")
	}
	if !Reusable(cl, BodyFixed, true, false) || Reusable(cl, BodyFixed, false, false) ||
		Reusable(cl, BodyFixed, true, true) || Reusable(h1.Framing{Length: 5, Close: true}, BodyFixed, true, false) ||
		Reusable(h1.Framing{Length: -1}, BodyUntilClose, true, false) {
		t.Error("reusable")
	}
	for _, tt := range []struct {
		a    Attempt
		want bool
	}{
		{Attempt{Reused: true, SentNone: true, WholeInHand: true}, true},
		{Attempt{Reused: true, SentNone: true}, false},
		{Attempt{SentNone: true, WholeInHand: true}, false},
		{Attempt{Reused: true, SentAll: true, Idempotent: true}, true},
		{Attempt{Reused: true, SentAll: true}, false},
		{Attempt{Reused: true, SentAll: true, Idempotent: true, GotAny: true}, false},
		{Attempt{Reused: true, Idempotent: true}, false},
	} {
		if got := tt.a.RetrySafe(); got != tt.want {
			t.Errorf("retrySafe(%+v) = %v", tt.a, got)
		}
	}
	if IdempotentRequest([]byte("GET"), true) || !IdempotentRequest([]byte("PUT"), false) || IdempotentRequest([]byte("POST"), false) {
		t.Error("IdempotentRequest")
	}
}
