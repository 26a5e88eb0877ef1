package test

// Hostile input that is not request smuggling (smuggling_test.go has that):
// client-address spoofing, hop-by-hop tricks against the proxy's own
// headers, and a client that never reads its response. The helpers at the
// end (seeding, a raw recording upstream, a raw client) are shared by
// pathtricks_test.go, logleak_test.go and fuzz_socket_test.go; their names
// start with "hostile" so they cannot collide with other files' helpers.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestClientAddressCannotBeSpoofed sends spoofed client-address headers from
// an untrusted peer (the default: proxy.trusted_proxies is empty) and checks
// what the upstream received. Rocket.Chat takes X-Real-IP as the client's
// address without question (rate limits, session.ip), so exactly one
// X-Real-IP must arrive, holding the peer's address, whatever case or
// repetition the client used; X-Forwarded-For must end with the peer's
// address (docs/forwarding.md: appended), so a reader that trusts the last hop is not
// fooled either.
func TestClientAddressCannotBeSpoofed(t *testing.T) {
	t.Parallel()
	up := startHostileUpstream(t)
	rds := StartRedis(t)
	g := StartGate(t, GateEnv(up.URL, rds.URL()))

	tests := []struct {
		name    string
		headers string
	}{
		{"canonical names", "X-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n"},
		{"lower-case names", "x-real-ip: 6.6.6.6\r\nx-forwarded-for: 6.6.6.6\r\n"},
		{"upper-case names", "X-REAL-IP: 6.6.6.6\r\nX-FORWARDED-FOR: 6.6.6.6\r\n"},
		{"Go and Node canonical form", "X-Real-Ip: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n"},
		{"repeated headers", "X-Real-IP: 6.6.6.6\r\nX-Real-IP: 7.7.7.7\r\nx-real-ip: 8.8.8.8\r\nX-Forwarded-For: 6.6.6.6\r\nX-Forwarded-For: 7.7.7.7\r\n"},
		{"list in X-Real-IP", "X-Real-IP: 6.6.6.6, 127.0.0.1\r\n"},
		{"empty values", "X-Real-IP:\r\nX-Forwarded-For:\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			resp, _, err := hostileRoundTrip(g.Addr, "GET /api/v1/me HTTP/1.1\r\nHost: chat.example\r\n"+tt.headers+"Connection: close\r\n\r\n")
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			hostileCheckClientAddr(t, resp, up)
		})
	}
}

// TestHopByHopTrickKeepsProxyHeaders names the proxy's own headers in the
// client's Connection header. RFC 9110 §7.6.1 makes a proxy drop the
// headers Connection names, which a naive proxy does after setting its own,
// so the upstream would lose X-Real-IP and fall back to the socket address
// (the proxy's) for every client: rate limits shared by everyone.
func TestHopByHopTrickKeepsProxyHeaders(t *testing.T) {
	t.Parallel()
	up := startHostileUpstream(t)
	rds := StartRedis(t)
	g := StartGate(t, GateEnv(up.URL, rds.URL()))

	tests := []struct {
		name       string
		connection string
	}{
		{"client-address headers", "X-Real-IP, X-Forwarded-For"},
		{"lower case, with keep-alive", "keep-alive, x-real-ip, x-forwarded-for"},
		{"forwarded proto and host", "X-Forwarded-Proto, X-Forwarded-Host, X-Real-IP"},
		{"repeated Connection headers", "X-Real-IP\r\nConnection: X-Forwarded-For"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			up.Reset()
			req := "GET /api/v1/me HTTP/1.1\r\nHost: chat.example\r\nConnection: " + tt.connection + "\r\n" +
				"X-Real-IP: 6.6.6.6\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"
			resp, _, err := hostileRoundTrip(g.Addr, req)
			if err != nil {
				t.Fatalf("round trip: %v", err)
			}
			head := hostileCheckClientAddr(t, resp, up)
			if got := head.Values("X-Forwarded-Proto"); len(got) != 1 || got[0] != "http" {
				t.Errorf("upstream got X-Forwarded-Proto %q, want [\"http\"]\nrequest head:\n%s", got, head.Head)
			}
			if got := head.Values("X-Forwarded-Host"); len(got) != 1 || got[0] != "chat.example" {
				t.Errorf("upstream got X-Forwarded-Host %q, want [\"chat.example\"]\nrequest head:\n%s", got, head.Head)
			}
			for _, v := range head.Values("Connection") {
				if strings.Contains(strings.ToLower(v), "x-") {
					t.Errorf("upstream got Connection: %s; the client's hop-by-hop list must not travel on", v)
				}
			}
		})
	}
}

// TestTrustedProxyKeepsClientAddress is the control of the two tests above:
// from a peer listed in proxy.trusted_proxies (an ingress in front of the
// gate) the client-address headers are kept as sent.
func TestTrustedProxyKeepsClientAddress(t *testing.T) {
	t.Parallel()
	up := startHostileUpstream(t)
	rds := StartRedis(t)
	env := GateEnv(up.URL, rds.URL())
	env["SESSIONGATE_PROXY_TRUSTED_PROXIES"] = "127.0.0.0/8"
	g := StartGate(t, env)

	resp, _, err := hostileRoundTrip(g.Addr, "GET /api/v1/me HTTP/1.1\r\nHost: chat.example\r\nX-Real-IP: 203.0.113.7\r\nX-Forwarded-For: 203.0.113.7\r\nConnection: close\r\n\r\n")
	if err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if resp.StatusCode != 200 {
		t.Fatalf("got status %d, want 200", resp.StatusCode)
	}
	head := hostileOnly(t, up)
	if got := head.Values("X-Real-IP"); len(got) != 1 || got[0] != "203.0.113.7" {
		t.Errorf("upstream got X-Real-IP %q from a trusted peer, want [\"203.0.113.7\"]", got)
	}
	if got := hostileForwardedFor(head); len(got) == 0 || got[0] != "203.0.113.7" {
		t.Errorf("upstream got X-Forwarded-For %q from a trusted peer, want it to start with \"203.0.113.7\"", got)
	}
}

// TestStalledClientDoesNotHoldMemory asks for a large download and never
// reads it. The gate must not pull the whole body from the upstream into
// memory (docs/forwarding.md: bodies stream), and proxy.write_timeout must make it give
// up on the client, which releases the upstream connection: the upstream's
// write then fails long before the whole body is written.
func TestStalledClientDoesNotHoldMemory(t *testing.T) {
	t.Parallel()
	linuxOnly(t, "the resident set size is read from /proc")
	const size = 128 << 20 // twice the RSS growth allowed below
	type outcome struct {
		written int
		err     error
	}
	done := make(chan outcome, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/download" {
			io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(size))
		chunk := make([]byte, 64<<10)
		written := 0
		for written < size {
			n, err := w.Write(chunk[:min(len(chunk), size-written)])
			written += n
			if err != nil {
				done <- outcome{written, err}
				return
			}
		}
		done <- outcome{written, nil}
	}))
	t.Cleanup(up.Close)
	rds := StartRedis(t)
	env := GateEnv(up.URL, rds.URL())
	env["SESSIONGATE_PROXY_WRITE_TIMEOUT"] = "2s"
	g := StartGate(t, env)

	// Warm up so the baseline includes the pools and buffers of one request.
	if resp, _, err := hostileRoundTrip(g.Addr, "GET /warm HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("warm-up request: %v %v", resp, err)
	}
	base := g.RSS()

	c, err := net.DialTimeout("tcp", g.Addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.(*net.TCPConn).SetReadBuffer(4 << 10) // a small window: backpressure early
	if _, err := io.WriteString(c, "GET /download HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}

	// Never read from c. Sample the gate's RSS until the upstream's handler
	// ends (its write fails once the gate lets go) or 30 s pass.
	peak := base
	var got outcome
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(30 * time.Second)
wait:
	for {
		select {
		case got = <-done:
			break wait
		case <-tick.C:
			peak = max(peak, g.RSS())
		case <-timeout:
			t.Fatalf("upstream still writing after 30 s with the client stalled (proxy.write_timeout 2s); gate RSS grew %d MiB", (peak-base)>>20)
		}
	}
	peak = max(peak, g.RSS())
	t.Logf("upstream wrote %d MiB of %d MiB before %v; gate RSS %d MiB → peak %d MiB", got.written>>20, size>>20, got.err, base>>20, peak>>20)

	if got.err == nil {
		t.Errorf("upstream wrote all %d MiB to a client that read nothing: the gate buffered the body instead of streaming it", size>>20)
	}
	if growth := peak - base; growth > 48<<20 {
		t.Errorf("gate RSS grew by %d MiB while the client was stalled, want < 48 MiB (the body is %d MiB)", growth>>20, size>>20)
	}
	// The gate still serves.
	resp, _, err := hostileRoundTrip(g.Addr, "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("request after the stall: got %v %v, want 200", resp, err)
	}
}

// hostileLogin is one seeded Rocket.Chat login: a user, a plain login token
// and a session of that user.
type hostileLogin struct {
	UserID, Token, SessionID string
}

// hostileHash is Rocket.Chat's (Meteor's Accounts._hashLoginToken) token
// hash: SHA-256 of the token, standard base64 (docs/route.md).
func hostileHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// Doc is the stored session document (docs/data-contract.md), shaped like the seed's
// example, with the hashed token in loginToken as Rocket.Chat stores it.
func (l hostileLogin) Doc() string {
	return `{"_id":"646ceae9a8c3a3ba32d0e897","type":"session","sessionId":"` + l.SessionID +
		`","instanceId":"f0313fa9-ebe6-4a84-8580-3104f6a09988","loginToken":"` + hostileHash(l.Token) +
		`","ip":"172.20.0.2","host":"localhost:3000","device":{"type":"browser","name":"Chrome","longVersion":"113.0.0.0","os":{"name":"Windows","version":"10"},"version":"113.0.0"},"userId":"` + l.UserID +
		`","roles":["user"],"mostImportantRole":"user","loginAt":"2023-05-23T16:33:45.202Z","day":23,"month":5,"year":2023,"createdAt":"2023-05-23T16:33:45.203Z","_updatedAt":"2023-05-23T17:56:31.599Z"}`
}

// SuccessBody is the route's 200 body: the document with "success":true
// appended as its last member (docs/route.md).
func (l hostileLogin) SuccessBody() string {
	d := l.Doc()
	return d[:len(d)-1] + `,"success":true}`
}

// hostileSeed writes l's token and session keys under the default prefix.
func hostileSeed(t testing.TB, c *redis.Client, logins ...hostileLogin) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, l := range logins {
		if err := c.Set(ctx, "rc:{"+l.UserID+"}:token:"+hostileHash(l.Token), `{"when":"2023-05-23T16:33:45.202Z"}`, 0).Err(); err != nil {
			t.Fatalf("seed token: %v", err)
		}
		if err := c.Set(ctx, "rc:{"+l.UserID+"}:session:"+l.SessionID, l.Doc(), 0).Err(); err != nil {
			t.Fatalf("seed session: %v", err)
		}
	}
}

// hostileCheckClientAddr asserts the upstream answered and received exactly
// the proxy's own client address: X-Real-IP 127.0.0.1 and 127.0.0.1 last in
// X-Forwarded-For, whatever the client sent. It returns the head received.
func hostileCheckClientAddr(t *testing.T, resp *http.Response, up *Upstream) *Req {
	t.Helper()
	if resp.StatusCode != 200 {
		t.Fatalf("got status %d, want 200 from the upstream", resp.StatusCode)
	}
	head := hostileOnly(t, up)
	if got := head.Values("X-Real-IP"); len(got) != 1 || got[0] != "127.0.0.1" {
		t.Errorf("upstream got X-Real-IP %q, want exactly [\"127.0.0.1\"]\nrequest head:\n%s", got, head.Head)
	}
	if got := hostileForwardedFor(head); len(got) == 0 || got[len(got)-1] != "127.0.0.1" {
		t.Errorf("upstream got X-Forwarded-For elements %q, want the last to be \"127.0.0.1\"\nrequest head:\n%s", got, head.Head)
	}
	return head
}

// hostileForwardedFor returns the elements of every X-Forwarded-For line of
// r, in order.
func hostileForwardedFor(r *Req) []string {
	var out []string
	for _, v := range r.Values("X-Forwarded-For") {
		for _, e := range strings.Split(v, ",") {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
	}
	return out
}

// startHostileUpstream starts an Upstream that answers 200 with
// "X-Upstream: raw" and the request-target as the body.
func startHostileUpstream(t testing.TB) *Upstream {
	t.Helper()
	return StartUpstream(t, func(r *Req) Answer {
		return Answer{Header: []string{"X-Upstream: raw", "Content-Type: text/plain"}, Body: r.Target}
	})
}

// hostileOnly returns the one request up received since its last Reset,
// failing t otherwise.
func hostileOnly(t *testing.T, up *Upstream) *Req {
	t.Helper()
	reqs := up.Reqs()
	if len(reqs) != 1 {
		t.Fatalf("upstream got %d requests, want 1", len(reqs))
	}
	return reqs[0]
}

// hostileRoundTrip sends raw on a new connection to addr and reads one
// response (the method for framing is raw's first word).
func hostileRoundTrip(addr, raw string) (*http.Response, []byte, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, raw); err != nil {
		return nil, nil, err
	}
	method, _, _ := strings.Cut(raw, " ")
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		return nil, nil, fmt.Errorf("reading response: %w", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, body, err
}
