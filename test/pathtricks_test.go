package test

import (
	"strings"
	"testing"
)

// TestPathTricksAgainstRouteMatch sends variants of the intercepted route's
// request line. docs/route.md: only GET with the raw path (before '?') exactly
// /api/v1/sessions/info is answered by the gate; everything else goes
// upstream with its request-target byte for byte (docs/forwarding.md: no cleaning, no
// decoding, no re-encoding), so the server decides for itself what a
// variant means. The stand-in upstream records the request line it got.
//
// Forwarding a variant is safe whatever the server makes of it: the route
// is read-only and the gate grants nothing the server would not.
func TestPathTricksAgainstRouteMatch(t *testing.T) {
	t.Parallel()
	up := startHostileUpstream(t)
	rds := StartRedis(t)
	login := hostileLogin{UserID: "pathUser1", Token: "pathtricks-token-0123456789", SessionID: "pathSession1"}
	hostileSeed(t, rds.Client(), login)
	g := StartGate(t, GateEnv(up.URL, rds.URL()))
	q := "?sessionId=" + login.SessionID

	// want: intercept (answered by the gate with wantStatus, nothing sent
	// upstream), forward (sent upstream unchanged), or rejectOrForward
	// (not a valid request-target: a 400 from the gate, or forwarded
	// unchanged; never intercepted).
	const (
		intercept = iota
		forward
		rejectOrForward
	)
	tests := []struct {
		name       string
		method     string
		target     string // "{addr}" is replaced by the gate's address
		want       int
		wantStatus int // for intercept
	}{
		{"exact path", "GET", "/api/v1/sessions/info" + q, intercept, 200},
		{"exact path, no query", "GET", "/api/v1/sessions/info", intercept, 400},
		{"exact path, empty query", "GET", "/api/v1/sessions/info?", intercept, 400},
		{"trailing slash", "GET", "/api/v1/sessions/info/" + q, forward, 0},
		{"dot-dot after", "GET", "/api/v1/sessions/info/.." + q, forward, 0},
		{"dot-dot back into the route", "GET", "/api/v1/sessions/x/../info" + q, forward, 0},
		{"dot segment", "GET", "/api/v1/sessions/./info" + q, forward, 0},
		{"encoded dot-dot", "GET", "/api/v1/sessions/info/%2e%2e" + q, forward, 0},
		{"encoded slash, lower", "GET", "/api/v1/sessions%2finfo" + q, forward, 0},
		{"encoded slash, upper", "GET", "/api/v1/sessions%2Finfo" + q, forward, 0},
		{"overlong UTF-8 slash", "GET", "/api/v1/sessions%C0%AFinfo" + q, forward, 0},
		{"encoded letter", "GET", "/api/v1/sessions/inf%6F" + q, forward, 0},
		{"encoded first letter", "GET", "/%61pi/v1/sessions/info" + q, forward, 0},
		{"encoded question mark", "GET", "/api/v1/sessions/info%3FsessionId=" + login.SessionID, forward, 0},
		{"semicolon parameter", "GET", "/api/v1/sessions/info;x=1" + q, forward, 0},
		{"bare semicolon", "GET", "/api/v1/sessions/info;" + q, forward, 0},
		{"upper case", "GET", "/API/V1/SESSIONS/INFO" + q, forward, 0},
		{"mixed case", "GET", "/api/v1/Sessions/info" + q, forward, 0},
		{"encoded NUL", "GET", "/api/v1/sessions/info%00" + q, forward, 0},
		{"raw NUL byte", "GET", "/api/v1/sessions/info\x00" + q, rejectOrForward, 0},
		{"backslashes", "GET", `/api\v1\sessions\info` + q, rejectOrForward, 0},
		{"double leading slash", "GET", "//api/v1/sessions/info" + q, forward, 0},
		{"double inner slash", "GET", "/api/v1//sessions/info" + q, forward, 0},
		{"fragment", "GET", "/api/v1/sessions/info#x" + q, rejectOrForward, 0},
		{"absolute-form", "GET", "http://{addr}/api/v1/sessions/info" + q, forward, 0},
		{"HEAD", "HEAD", "/api/v1/sessions/info" + q, forward, 0},
		{"POST", "POST", "/api/v1/sessions/info" + q, forward, 0},
		{"lower-case method", "get", "/api/v1/sessions/info" + q, rejectOrForward, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			target := strings.ReplaceAll(tt.target, "{addr}", g.Addr)
			line := tt.method + " " + target + " HTTP/1.1"
			req := line + "\r\nHost: " + g.Addr + "\r\nX-User-Id: " + login.UserID + "\r\nX-Auth-Token: " + login.Token + "\r\n"
			if tt.method == "POST" {
				req += "Content-Length: 0\r\n"
			}
			req += "Connection: close\r\n\r\n"
			up.Reset()
			resp, body, err := hostileRoundTrip(g.Addr, req)
			heads := up.Reqs()

			switch {
			case err != nil && len(heads) == 0 && tt.want == rejectOrForward:
				t.Logf("%-30s %-55q closed without an answer, not forwarded", tt.name, line)
				return
			case err != nil:
				t.Fatalf("round trip: %v (upstream got %d requests)", err, len(heads))
			}
			switch {
			case len(heads) == 0 && resp.Header.Get("X-Upstream") == "":
				t.Logf("%-30s %-55q answered by the gate: %d", tt.name, line, resp.StatusCode)
				switch tt.want {
				case intercept:
					if resp.StatusCode != tt.wantStatus {
						t.Errorf("got status %d, want %d", resp.StatusCode, tt.wantStatus)
					}
					if tt.wantStatus == 200 && string(body) != login.SuccessBody() {
						t.Errorf("got body %s, want %s", body, login.SuccessBody())
					}
				case rejectOrForward:
					if resp.StatusCode != 400 {
						t.Errorf("got status %d from the gate, want 400 or forwarded unchanged", resp.StatusCode)
					}
				default:
					t.Errorf("intercepted (status %d), want forwarded unchanged", resp.StatusCode)
				}
			case len(heads) == 1:
				t.Logf("%-30s %-55q forwarded as %q", tt.name, line, heads[0].Line)
				if tt.want == intercept {
					t.Errorf("forwarded as %q, want answered by the gate", heads[0].Line)
				}
				if heads[0].Line != line {
					t.Errorf("upstream got request line %q, want %q byte for byte", heads[0].Line, line)
				}
				if resp.StatusCode != 200 || resp.Header.Get("X-Upstream") != "raw" {
					t.Errorf("got status %d X-Upstream %q, want the upstream's 200 relayed", resp.StatusCode, resp.Header.Get("X-Upstream"))
				}
			default:
				t.Errorf("upstream got %d requests, want at most 1", len(heads))
			}
		})
	}
}
