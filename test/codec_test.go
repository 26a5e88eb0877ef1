package test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Black-box tests of the HTTP/1.1 codec rules both request paths share
// (docs/forwarding.md): upstream response heads that break RFC 9112, chunk extensions,
// absolute-form targets and Upgrade. CI runs this package with the event
// loop on and off, so each rule is checked on both paths.

// codecBadHeads are upstream answers whose heads break RFC 9112; each must
// reach the client as 502, whatever the request path.
var codecBadHeads = map[string]string{
	"nul":             "HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
	"bare-cr":         "HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",
	"ctl":             "HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok",
	"space-colon":     "HTTP/1.1 200 OK\r\nX-A : b\r\nContent-Length: 2\r\n\r\nok",
	"bad-name":        "HTTP/1.1 200 OK\r\nX(A): b\r\nContent-Length: 2\r\n\r\nok",
	"dup-cl":          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok",
	"conflicting-cl":  "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
	"cl-and-te":       "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
	"obs-fold":        "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
	"status-line":     "HTTP/1.1 20 OK\r\nContent-Length: 2\r\n\r\nok",
	"version":         "HTTP/1.x 200 OK\r\nContent-Length: 2\r\n\r\nok",
	"reason-ctl":      "HTTP/1.1 200 O\x00K\r\nContent-Length: 2\r\n\r\nok",
	"oversize":        "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Big: "+strings.Repeat("b", 100)+"\r\n", 200) + "Content-Length: 2\r\n\r\nok",
	"oversize-lf":     "HTTP/1.1 200 OK\n" + strings.Repeat("X-B: b\n", 2200) + "Content-Length: 2\n\nok",
	"bad-chunk-ext":   "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=\"ok\r\nok\r\n0\r\n\r\n",
	"chunk-ext-token": "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b@c\r\nok\r\n0\r\n\r\n",
	"conn-tokens":     "HTTP/1.1 200 OK\r\nConnection: " + strings.Repeat("x,", 100) + "y\r\nContent-Length: 2\r\n\r\nok",
}

func codecBadHeadUpstream(t *testing.T) *fwdUpstream {
	return fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		target := strings.Fields(head)[1]
		if raw, ok := codecBadHeads[strings.TrimPrefix(target, "/bad/")]; ok {
			io.WriteString(c, raw)
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	})
}

// TestBadUpstreamHeadIs502: a response head that breaks RFC 9112 is never
// relayed, on either path; the client gets 502. A bad chunk extension is
// only seen once the head is on its way, so there the client connection
// is cut: no answer, or a body that never completes.
func TestBadUpstreamHeadIs502(t *testing.T) {
	t.Parallel()
	up := codecBadHeadUpstream(t)
	g := fwdGate(t, up.URL, nil)
	for name := range codecBadHeads {
		t.Run(name, func(t *testing.T) {
			c, br := fwdDial(t, g)
			io.WriteString(c, "GET /bad/"+name+" HTTP/1.1\r\nHost: chat\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			chunkErr := strings.Contains(name, "chunk-ext")
			if err != nil {
				if chunkErr {
					return // cut before the head went out
				}
				t.Fatalf("read response: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if chunkErr && resp.StatusCode == 200 {
				// The head went out before the bad size line was read:
				// the body must be cut, never complete.
				if err == nil {
					t.Fatalf("got a complete 200 body %q, want 502 or a cut body", body)
				}
				return
			}
			if resp.StatusCode != 502 {
				t.Fatalf("got %d %q, want 502", resp.StatusCode, body)
			}
		})
	}
	// The gate still serves.
	c, br := fwdDial(t, g)
	if resp, body := fwdRoundTrip(t, c, br, "GET /fine HTTP/1.1\r\nHost: chat\r\n\r\n", "GET"); resp.StatusCode != 200 || string(body) != "ok" {
		t.Fatalf("after the bad heads: got %d %q", resp.StatusCode, body)
	}
}

// TestTooManyConnectionTokens: a request whose Connection fields list more
// options than any client sends is refused with 400 on both paths, and
// nothing is forwarded.
func TestTooManyConnectionTokens(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, nil)
	var list []string
	for i := range 3500 {
		list = append(list, strconv.FormatInt(int64(i), 36))
	}
	raw := "GET / HTTP/1.1\r\nHost: chat\r\nConnection: " + strings.Join(list, ",") + "\r\n\r\n"
	if got := rawExchange(t, g, raw); got != 400 {
		t.Errorf("3 500 Connection tokens: got %d, want 400", got)
	}
	up.none(t, 100*time.Millisecond)
	c, br := fwdDial(t, g)
	raw = "GET / HTTP/1.1\r\nHost: chat\r\nConnection: keep-alive, " + strings.Join(list[:60], ",") + "\r\n" + list[59] + ": x\r\n\r\n"
	if resp, _ := fwdRoundTrip(t, c, br, raw, "GET"); resp.StatusCode != 200 {
		t.Errorf("61 Connection tokens: got %d, want 200", resp.StatusCode)
	}
	if head := up.next(t); strings.Contains(head, "\r\n"+list[59]+":") {
		t.Errorf("field named in Connection forwarded:\n%s", head)
	}
}

// TestUpgradeOtherThanWebSocket: only an Upgrade of exactly "websocket" is
// forwarded as one; "h2c, websocket" or two Upgrade fields are plain
// requests with Upgrade dropped, and a 101 that does not switch to
// websocket is 502, not a tunnel.
func TestUpgradeOtherThanWebSocket(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, func(c net.Conn, head string, _ []byte) {
		switch target := strings.Fields(head)[1]; target {
		case "/h2c-101":
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nPRI")
		case "/no-upgrade-101":
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\n\r\nsecret")
		case "/ws-101":
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: WebSocket\r\nSec-WebSocket-Accept: x\r\n\r\nhello")
		default:
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	g := fwdGate(t, up.URL, nil)
	const ws = "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"

	for _, upgrade := range []string{"Upgrade: h2c, websocket\r\n", "Upgrade: websocket\r\nUpgrade: websocket\r\n", "Upgrade: websocket, h2c\r\n"} {
		c, br := fwdDial(t, g)
		resp, body := fwdRoundTrip(t, c, br, "GET /plain HTTP/1.1\r\nHost: chat\r\n"+upgrade+ws, "GET")
		if resp.StatusCode != 200 || string(body) != "ok" {
			t.Errorf("%q: got %d %q, want the plain 200", upgrade, resp.StatusCode, body)
		}
		head := up.next(t)
		for _, l := range fwdHeaderLines(head) {
			name, _, _ := strings.Cut(l, ":")
			if strings.EqualFold(name, "Upgrade") || strings.EqualFold(name, "Connection") {
				t.Errorf("%q: upstream got %q:\n%s", upgrade, l, head)
			}
		}
	}

	// A 101 to a WebSocket handshake that switches to something else.
	for _, path := range []string{"/h2c-101", "/no-upgrade-101"} {
		c, br := fwdDial(t, g)
		io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\n"+ws)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Errorf("%s: got %d, want 502", path, resp.StatusCode)
		}
	}
	// One that does switch to websocket (any case) is tunnelled.
	c, br := fwdDial(t, g)
	io.WriteString(c, "GET /ws-101 HTTP/1.1\r\nHost: chat\r\nUpgrade: websocket\r\n"+ws)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("/ws-101: got %v %v, want 101", resp, err)
	}
	got := make([]byte, 5)
	if _, err := io.ReadFull(bufio.NewReader(br), got); err != nil || string(got) != "hello" {
		t.Errorf("/ws-101: tunnel gave %q %v, want hello", got, err)
	}
}

// TestAbsoluteFormTargetHost: an absolute-form target's authority is the
// request's host (RFC 9112 §3.2.2): it replaces the client's Host on the
// way upstream, on both paths. An authority with userinfo or none at all
// is refused.
func TestAbsoluteFormTargetHost(t *testing.T) {
	t.Parallel()
	up := fwdStartUpstream(t, nil)
	g := fwdGate(t, up.URL, nil)
	c, br := fwdDial(t, g)
	for _, m := range []string{"GET", "POST"} {
		raw := m + " http://Other.example:81/x?y=1 HTTP/1.1\r\nHost: chat\r\nContent-Length: 0\r\n\r\n"
		resp, _ := fwdRoundTrip(t, c, br, raw, m)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: got %d, want 200", m, resp.StatusCode)
		}
		head := up.next(t)
		if !strings.HasPrefix(head, m+" http://Other.example:81/x?y=1 HTTP/1.1\r\n") {
			t.Errorf("%s: target not forwarded as sent:\n%s", m, head)
		}
		var hosts, fwdHosts []string
		for _, l := range fwdHeaderLines(head) {
			name, value, _ := strings.Cut(l, ":")
			switch strings.ToLower(name) {
			case "host":
				hosts = append(hosts, strings.TrimSpace(value))
			case "x-forwarded-host":
				fwdHosts = append(fwdHosts, strings.TrimSpace(value))
			}
		}
		if len(hosts) != 1 || hosts[0] != "Other.example:81" {
			t.Errorf("%s: upstream Host %q, want [Other.example:81]:\n%s", m, hosts, head)
		}
		if len(fwdHosts) != 1 || fwdHosts[0] != "Other.example:81" {
			t.Errorf("%s: upstream X-Forwarded-Host %q, want [Other.example:81]", m, fwdHosts)
		}
	}
	for _, target := range []string{"http://user@other/", "http:///x", "ftp://other/"} {
		if got := rawExchange(t, g, "GET "+target+" HTTP/1.1\r\nHost: chat\r\n\r\n"); got != 400 {
			t.Errorf("target %q: got %d, want 400", target, got)
		}
	}
	up.none(t, 100*time.Millisecond)
}
