package test

import (
	"strings"
	"testing"
)

// Client address (docs/forwarding.md): Rocket.Chat trusts X-Real-IP blindly for rate
// limits and session.ip, so an untrusted client's value never reaches it;
// a trusted proxy's headers pass as they are.

// fieldValues returns the values of every field called name (any case).
func fieldValues(head, name string) []string {
	var vs []string
	for _, line := range fwdHeaderLines(head) {
		n, v, ok := strings.Cut(line, ":")
		if ok && strings.EqualFold(n, name) {
			vs = append(vs, strings.TrimSpace(v))
		}
	}
	return vs
}

func TestClientAddress(t *testing.T) {
	t.Parallel()
	const spoof = "GET /api/v1/me HTTP/1.1\r\nHost: chat.example\r\n" +
		"Connection: X-Real-IP, x-forwarded-for\r\n" + // must not strip what sessiongate sets
		"x-real-ip: 6.6.6.6\r\n" +
		"X-Real-IP: 7.7.7.7\r\n" +
		"X-Forwarded-For: 1.1.1.1\r\n" +
		"x-forwarded-for: 2.2.2.2, 3.3.3.3\r\n\r\n"
	const plain = "GET /api/v1/me HTTP/1.1\r\nHost: chat.example\r\n" +
		"X-Real-IP: 10.1.2.3\r\n" +
		"X-Forwarded-For: 203.0.113.9, 10.1.2.3\r\n" +
		"X-Forwarded-Proto: https\r\n" +
		"X-Forwarded-Host: public.example\r\n\r\n"
	tests := []struct {
		name    string
		trusted string // proxy.trusted_proxies
		request string
		realIP  []string
		xff     []string
		xfProto []string
		xfHost  []string
	}{
		{"untrusted spoofing client", "", spoof,
			[]string{"127.0.0.1"}, []string{"1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1"}, []string{"http"}, []string{"chat.example"}},
		{"untrusted plain client", "", "GET / HTTP/1.1\r\nHost: chat.example\r\n\r\n",
			[]string{"127.0.0.1"}, []string{"127.0.0.1"}, []string{"http"}, []string{"chat.example"}},
		{"untrusted keeps given proto and host", "10.0.0.0/8", plain,
			[]string{"127.0.0.1"}, []string{"203.0.113.9, 10.1.2.3, 127.0.0.1"}, []string{"https"}, []string{"public.example"}},
		{"trusted proxy headers kept", "127.0.0.1/8", plain,
			[]string{"10.1.2.3"}, []string{"203.0.113.9, 10.1.2.3"}, []string{"https"}, []string{"public.example"}},
		{"trusted single address", "10.9.9.9,127.0.0.1", plain,
			[]string{"10.1.2.3"}, []string{"203.0.113.9, 10.1.2.3"}, []string{"https"}, []string{"public.example"}},
	}
	up := fwdStartUpstream(t, nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var extra map[string]string
			if tt.trusted != "" {
				extra = map[string]string{"SESSIONGATE_PROXY_TRUSTED_PROXIES": tt.trusted}
			}
			g := fwdGate(t, up.URL, extra)
			c, br := fwdDial(t, g)
			if resp, _ := fwdRoundTrip(t, c, br, tt.request, "GET"); resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			head := up.next(t)
			for _, f := range []struct {
				name string
				want []string
			}{
				{"X-Real-IP", tt.realIP}, {"X-Forwarded-For", tt.xff},
				{"X-Forwarded-Proto", tt.xfProto}, {"X-Forwarded-Host", tt.xfHost},
			} {
				if got := fieldValues(head, f.name); strings.Join(got, "|") != strings.Join(f.want, "|") {
					t.Errorf("%s: got %q, want %q\nupstream head:\n%s", f.name, got, f.want, head)
				}
			}
		})
	}
}
