package h1

import (
	"errors"
	"strings"
	"testing"
)

// TestAbsoluteFormHost: the target's authority replaces Host (RFC 9112
// §3.2.2), the target itself goes upstream as sent, and a target that
// names no usable http(s) host is refused.
func TestAbsoluteFormHost(t *testing.T) {
	p := newTestBuilder()
	for _, tt := range []struct {
		name, raw, host, xfh string
	}{
		{"other host", "GET http://other.example:81/x?y=1 HTTP/1.1\r\nHost: chat\r\n\r\n", "other.example:81", "other.example:81"},
		{"same host", "GET http://chat/x HTTP/1.1\r\nHost: chat\r\n\r\n", "chat", "chat"},
		{"upper-case scheme, https", "GET HTTPS://[::1]:8443 HTTP/1.1\r\nHost: chat\r\n\r\n", "[::1]:8443", "[::1]:8443"},
		{"query right after authority", "GET http://other?x=1 HTTP/1.1\r\nHost: chat\r\n\r\n", "other", "other"},
		{"HTTP/1.0 without Host", "GET http://other/x HTTP/1.0\r\n\r\n", "other", "other"},
		{"origin-form unchanged", "GET /x HTTP/1.1\r\nHost: chat\r\n\r\n", "chat", "chat"},
		{"origin-form with :// in the query", "GET /x?u=http://other/ HTTP/1.1\r\nHost: chat\r\n\r\n", "chat", "chat"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx := fwdParseRequest(t, tt.raw, "192.0.2.1:1")
			out, _, err := p.appendRequestHead(nil, ctx, false)
			if err != nil {
				t.Fatal(err)
			}
			target := strings.Fields(tt.raw)[1]
			if !strings.HasPrefix(string(out), "GET "+target+" HTTP/1.1\r\n") {
				t.Errorf("target changed: %q", out)
			}
			var hosts, xfh []string
			for _, l := range strings.Split(string(out), "\r\n")[1:] {
				name, value, _ := strings.Cut(l, ": ")
				switch strings.ToLower(name) {
				case "host":
					hosts = append(hosts, value)
				case "x-forwarded-host":
					xfh = append(xfh, value)
				}
			}
			if len(hosts) != 1 || hosts[0] != tt.host || len(xfh) != 1 || xfh[0] != tt.xfh {
				t.Errorf("got Host %q, X-Forwarded-Host %q; want [%s] [%s]:\n%s", hosts, xfh, tt.host, tt.xfh, out)
			}
		})
	}
	for _, target := range []string{"http://user@other/", "http://user:pw@other/", "http:///x", "http://", "ftp://other/", "ws://other/", "http://oth\"er/"} {
		ctx := fwdParseRequest(t, "GET "+target+" HTTP/1.1\r\nHost: chat\r\n\r\n", "192.0.2.1:1")
		if _, _, err := p.appendRequestHead(nil, ctx, false); !errors.Is(err, ErrTarget) {
			t.Errorf("target %q: got %v, want ErrTarget", target, err)
		}
	}
}
