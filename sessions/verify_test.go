package sessions

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/auth"
)

// markedStore is memStore whose tokens listed in marked are reported as
// the data contract's marked keys: ErrUnverified with the document.
type markedStore struct {
	*memStore
	marked map[string]bool // hashed token
}

func (m markedStore) Session(ctx context.Context, userID, hashedToken, sessionID []byte) (string, error) {
	doc, err := m.memStore.Session(ctx, userID, hashedToken, sessionID)
	if !m.marked[string(hashedToken)] {
		return doc, err
	}
	switch {
	case err == nil:
		return doc, ErrUnverified
	case errors.Is(err, ErrNotFound):
		return "", ErrUnverifiedNotFound
	}
	return doc, err
}

func (m markedStore) Authenticate(ctx context.Context, userID, hashedToken []byte) error {
	err := m.memStore.Authenticate(ctx, userID, hashedToken)
	if err == nil && m.marked[string(hashedToken)] {
		return ErrUnverified
	}
	return err
}

// answerVerifier answers every question with valid, or err; it records
// what it was asked.
type answerVerifier struct {
	valid bool
	err   error

	mu       sync.Mutex
	asked    []string
	deadline time.Duration
}

func (v *answerVerifier) Verify(ctx context.Context, userID, hashedToken []byte) (bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.asked = append(v.asked, string(userID)+" "+string(hashedToken))
	if d, ok := ctx.Deadline(); ok {
		v.deadline = time.Until(d)
	}
	return v.valid, v.err
}

func TestMarkedTokenIsVerifiedFirst(t *testing.T) {
	mem := fixtureStore()
	store := markedStore{mem, map[string]bool{auth.HashToken(seedToken): true}}
	seed := creds(seedUser, seedToken)
	info := "/api/v1/sessions/info?sessionId="
	tests := []struct {
		name     string
		target   string
		headers  []string
		verifier *answerVerifier
		onError  string
		status   int // 0: forwarded
		body     string
		report   byte // activity reported; 0: none
	}{
		{"valid: served", info + seedSession, seed, &answerVerifier{valid: true}, "", 200, seedDoc[:len(seedDoc)-1] + `,"success":true}`, 'h'},
		{"valid, no session: 404", info + "nope", seed, &answerVerifier{valid: true}, "", 404, want404, 'h'},
		{"removed: 401", info + seedSession, seed, &answerVerifier{valid: false}, "", 401, want401, 'm'},
		{"removed, no session: 401", info + "nope", seed, &answerVerifier{valid: false}, "", 401, want401, 'm'},
		{"valid, invalid query: 400", "/api/v1/sessions/info?foo=1", seed, &answerVerifier{valid: true}, "", 400, want400Req, 'h'},
		{"removed, invalid query: 401", "/api/v1/sessions/info?foo=1", seed, &answerVerifier{valid: false}, "", 401, want401, 'm'},
		{"no answer, forward", info + seedSession, seed, &answerVerifier{err: errors.New("no answer")}, OnErrorForward, 0, "", 0},
		{"no answer, unavailable: 503", info + seedSession, seed, &answerVerifier{err: errors.New("no answer")}, OnErrorUnavailable, 503, want503, 0},
		{"no answer, invalid query, forward", "/api/v1/sessions/info?foo=1", seed, &answerVerifier{err: errors.New("no answer")}, OnErrorForward, 0, "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var reported []byte
			h := newHandler(t, store, Options{Verifier: tt.verifier, VerifyTimeout: 700 * time.Millisecond, OnError: tt.onError,
				Activity: func(kind byte, _, _ []byte) { reported = append(reported, kind) }})
			ctx := request(t, tt.target, tt.headers...)
			served := h.Serve(ctx)
			if tt.status == 0 {
				if served {
					t.Fatalf("answered %d, want the request forwarded", ctx.Response.StatusCode())
				}
			} else {
				checkAnswer(t, ctx, served, tt.status, tt.body)
			}
			if want := []string{seedUser + " " + auth.HashToken(seedToken)}; len(tt.verifier.asked) != 1 || tt.verifier.asked[0] != want[0] {
				t.Errorf("verifier asked %q, want %q", tt.verifier.asked, want)
			}
			if d := tt.verifier.deadline; d <= 600*time.Millisecond || d > 700*time.Millisecond {
				t.Errorf("verifier's deadline: %v left, want route.verify_timeout (700ms)", d)
			}
			if want := []byte{tt.report}; (tt.report == 0 && len(reported) != 0) || (tt.report != 0 && string(reported) != string(want)) {
				t.Errorf("activity reported %q, want %q", reported, want)
			}
		})
	}
}

func TestUnmarkedTokenIsNotVerified(t *testing.T) {
	v := &answerVerifier{valid: false}
	h := newHandler(t, fixtureStore(), Options{Verifier: v})
	ctx := request(t, "/api/v1/sessions/info?sessionId="+seedSession, creds(seedUser, seedToken)...)
	checkAnswer(t, ctx, h.Serve(ctx), 200, seedDoc[:len(seedDoc)-1]+`,"success":true}`)
	ctx = request(t, "/api/v1/sessions/info?sessionId="+seedSession, creds(seedUser, "wrong")...)
	checkAnswer(t, ctx, h.Serve(ctx), 401, want401)
	if len(v.asked) != 0 {
		t.Errorf("verifier asked %q, want nothing: only marked tokens are verified", v.asked)
	}
}

// Without a Verifier (no writer marks keys), a marked key is served as
// any other.
func TestMarkedTokenWithoutVerifierIsServed(t *testing.T) {
	store := markedStore{fixtureStore(), map[string]bool{auth.HashToken(seedToken): true}}
	h := newHandler(t, store, Options{})
	ctx := request(t, "/api/v1/sessions/info?sessionId="+seedSession, creds(seedUser, seedToken)...)
	checkAnswer(t, ctx, h.Serve(ctx), 200, seedDoc[:len(seedDoc)-1]+`,"success":true}`)
	ctx = request(t, "/api/v1/sessions/info?sessionId=nope", creds(seedUser, seedToken)...)
	checkAnswer(t, ctx, h.Serve(ctx), 404, want404)
}
