package h1

import (
	"bufio"
	"bytes"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// Unit tests of the forwarding pieces that see client and upstream bytes:
// the request head builder, the response head filter, the chunk parser.
// The black-box tests in test/ cover the same behaviour through the binary.

// fwdParseRequest parses raw like the server does (header names as sent,
// body streamed) into a RequestCtx from peer.
func fwdParseRequest(tb testing.TB, raw, peer string) *fasthttp.RequestCtx {
	tb.Helper()
	ctx := &fasthttp.RequestCtx{}
	ctx.Request.Header.DisableNormalizing()
	if err := ctx.Request.Header.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		tb.Fatalf("parse %q: %v", raw, err)
	}
	addr, err := net.ResolveTCPAddr("tcp", peer)
	if err != nil {
		tb.Fatal(err)
	}
	ctx.SetRemoteAddr(addr)
	return ctx
}

// testBuilder builds upstream heads the way the proxy does, for a proxy
// whose upstream is upstream:3000 and whose trusted proxies are trusted.
type testBuilder struct{ trusted []netip.Prefix }

func newTestBuilder(trusted ...string) *testBuilder {
	b := &testBuilder{}
	for _, s := range trusted {
		b.trusted = append(b.trusted, netip.MustParsePrefix(s))
	}
	return b
}

func (b *testBuilder) appendRequestHead(dst []byte, ctx *fasthttp.RequestCtx, upgrade bool) ([]byte, RequestHead, error) {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	o := RequestOptions{Peer: peer, TLS: ctx.IsTLS(), Upgrade: upgrade, DefaultHost: []byte("upstream:3000")}
	for _, pfx := range b.trusted {
		o.Trusted = o.Trusted || pfx.Contains(peer)
	}
	return AppendRequestHead(dst, &ctx.Request.Header, o)
}

func TestAppendRequestHead(t *testing.T) {
	tests := []struct {
		name    string
		raw     string
		trusted []string
		upgrade bool
		want    string
		chunked bool
		length  int64
	}{
		{
			name: "case, order and repeats kept; client address appended",
			raw:  "GET /a%2Fb?x=1&x=2 HTTP/1.1\r\nhost: Chat\r\nX-B: 1\r\ncookie: a=1;  b=2\r\nX-B: 2\r\nAuthorization: Bearer t\r\n\r\n",
			want: "GET /a%2Fb?x=1&x=2 HTTP/1.1\r\nhost: Chat\r\nX-B: 1\r\ncookie: a=1;  b=2\r\nX-B: 2\r\nAuthorization: Bearer t\r\n" +
				"X-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: Chat\r\n\r\n",
			length: -1,
		},
		{
			name: "hop-by-hop and Connection-named fields dropped, spoofed address replaced",
			raw: "POST /p HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Real-IP, x-secret, Content-Length\r\nKeep-Alive: 5\r\n" +
				"X-Secret: s\r\nTE: trailers\r\nUpgrade: h2c\r\nProxy-Authorization: Basic x\r\nX-Real-IP: 6.6.6.6\r\n" +
				"x-forwarded-for: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2\r\nX-Forwarded-Proto: https\r\nContent-Length: 3\r\n\r\n",
			want: "POST /p HTTP/1.1\r\nHost: h\r\nX-Forwarded-Proto: https\r\nContent-Length: 3\r\n" +
				"X-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 192.0.2.7\r\nX-Forwarded-Host: h\r\n\r\n",
			length: 3,
		},
		{
			name:    "trusted peer keeps its address headers",
			raw:     "GET / HTTP/1.1\r\nHost: h\r\nX-Real-IP: 10.0.0.9\r\nX-Forwarded-For: 203.0.113.1\r\n\r\n",
			trusted: []string{"192.0.2.0/24"},
			want:    "GET / HTTP/1.1\r\nHost: h\r\nX-Real-IP: 10.0.0.9\r\nX-Forwarded-For: 203.0.113.1\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n",
			length:  -1,
		},
		{
			name:    "chunked body re-framed, Expect answered here",
			raw:     "PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
			want:    "PUT /u HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\n\r\n",
			chunked: true,
			length:  -1,
		},
		{
			name:   "HTTP/1.0 without Host gets the upstream's",
			raw:    "GET / HTTP/1.0\r\nX-A: 1\r\n\r\n",
			want:   "GET / HTTP/1.1\r\nX-A: 1\r\nHost: upstream:3000\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n\r\n",
			length: -1,
		},
		{
			name:    "WebSocket handshake keeps Upgrade",
			raw:     "GET /websocket HTTP/1.1\r\nHost: h\r\nconnection: Upgrade\r\nupgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n",
			upgrade: true,
			want:    "GET /websocket HTTP/1.1\r\nHost: h\r\nupgrade: websocket\r\nSec-WebSocket-Key: k\r\nX-Real-IP: 192.0.2.7\r\nX-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nX-Forwarded-Host: h\r\nConnection: Upgrade\r\n\r\n",
			length:  -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := fwdParseRequest(t, tt.raw, "192.0.2.7:5555")
			got, rh, err := newTestBuilder(tt.trusted...).appendRequestHead(nil, ctx, tt.upgrade)
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if string(got) != tt.want {
				t.Errorf("head:\ngot  %q\nwant %q", got, tt.want)
			}
			if rh.Chunked != tt.chunked || rh.ContentLength != tt.length {
				t.Errorf("framing: got chunked=%v length=%d, want %v %d", rh.Chunked, rh.ContentLength, tt.chunked, tt.length)
			}
		})
	}
}

func TestAppendRequestHeadRefuses(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want error
	}{
		{"content-length with chunked", "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", ErrCLAndTE},
		{"folded line", "GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n 2\r\n\r\n", ErrObsFold},
		{"bare LF", "GET / HTTP/1.1\r\nHost: h\nX-A: 1\r\n\r\n", ErrBareLF},
		{"space inside name", "GET / HTTP/1.1\r\nHost: h\r\nX A: 1\r\n\r\n", ErrFieldName},
		{"identity coding", "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: identity\r\n\r\n", ErrTransferCode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := fwdParseRequest(t, tt.raw, "192.0.2.7:5555")
			if _, _, err := newTestBuilder().appendRequestHead(nil, ctx, false); err != tt.want {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFilterResponseHead(t *testing.T) {
	tests := []struct {
		name  string
		block string
		want  string
		code  int
		fr    Framing
	}{
		{
			name:  "hop-by-hop removed, rest kept in order",
			block: "HTTP/1.1 200 OK\r\nx-a: 1\r\nConnection: keep-alive, X-Private\r\nKeep-Alive: timeout=5\r\nX-Private: p\r\nDate: d\r\nX-A: 2\r\nContent-Length: 2\r\n\r\n",
			want:  "HTTP/1.1 200 OK\r\nx-a: 1\r\nDate: d\r\nX-A: 2\r\nContent-Length: 2\r\n\r\n",
			code:  200, fr: Framing{Length: 2},
		},
		{
			name:  "chunked, HTTP/1.0 keep-alive, bare LF lines",
			block: "HTTP/1.0 404 Not Found\nTransfer-Encoding: chunked\nConnection: keep-alive\n\n",
			want:  "HTTP/1.1 404 Not Found\r\n\r\n",
			code:  404, fr: Framing{Length: -1, Chunked: true},
		},
		{
			name:  "close asked, no length",
			block: "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n",
			want:  "HTTP/1.1 200 OK\r\n\r\n",
			code:  200, fr: Framing{Length: -1, Close: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, code, fr, err := FilterResponseHead(nil, []byte(tt.block))
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want || code != tt.code || fr != tt.fr {
				t.Errorf("got %q %d %+v, want %q %d %+v", got, code, fr, tt.want, tt.code, tt.fr)
			}
		})
	}
	for _, bad := range []string{
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n",
	} {
		if _, _, _, err := FilterResponseHead(nil, []byte(bad)); err == nil {
			t.Errorf("FilterResponseHead(%q): no error", bad)
		}
	}
}

func TestReadChunkSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"5\r\n", 5, true},
		{"fF\r\n", 255, true},
		{"10;name=value\r\n", 16, true},
		{"0\r\n", 0, true},
		{"\r\n", 0, false},
		{"x\r\n", 0, false},
		{"5\n", 0, false},
		{"5\rx", 0, false},
		{"1234567890abcdef0\r\n", 0, false},
		{"5", 0, false},
	}
	for _, tt := range tests {
		got, err := chunkSizeLine([]byte(tt.in))
		if (err == nil) != tt.ok || (tt.ok && got != tt.want) {
			t.Errorf("chunk size line %q: got %d, %v; want %d, ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestRemoveHopByHop(t *testing.T) {
	ctx := fwdParseRequest(t, "GET /websocket HTTP/1.1\r\nHost: h\r\nconnection: Upgrade, x-priv\r\nupgrade: websocket\r\nx-priv: 1\r\nKeep-Alive: 1\r\nCookie: a=1;  b\r\nX-Keep: k\r\n\r\n", "192.0.2.7:1")
	if err := RemoveHopByHopRequest(&ctx.Request.Header, true); err != nil {
		t.Fatal(err)
	}
	got := string(ctx.Request.Header.Header())
	for _, gone := range []string{"x-priv", "Keep-Alive", "connection:"} {
		if strings.Contains(got, gone) {
			t.Errorf("request still has %q:\n%s", gone, got)
		}
	}
	for _, kept := range []string{"upgrade: websocket", "Cookie: a=1;  b", "X-Keep: k", "Connection: Upgrade"} {
		if !strings.Contains(got, kept) {
			t.Errorf("request lacks %q:\n%s", kept, got)
		}
	}

	var rh fasthttp.ResponseHeader
	rh.DisableNormalizing()
	if err := rh.Read(bufio.NewReader(strings.NewReader("HTTP/1.1 400 Bad Request\r\nconnection: x-up\r\nx-up: 1\r\nUpgrade: websocket\r\nProxy-Authenticate: B\r\nX-Keep: k\r\nContent-Length: 0\r\n\r\n"))); err != nil {
		t.Fatal(err)
	}
	if err := RemoveHopByHopResponse(&rh, false); err != nil {
		t.Fatal(err)
	}
	got = rh.String()
	for _, gone := range []string{"x-up", "Upgrade", "Proxy-Authenticate", "connection"} {
		if strings.Contains(got, gone) {
			t.Errorf("response still has %q:\n%s", gone, got)
		}
	}
	if !strings.Contains(got, "X-Keep: k") {
		t.Errorf("response lacks X-Keep:\n%s", got)
	}
}

// FuzzAppendRequestHead feeds arbitrary heads that fasthttp accepts: the
// builder must not panic, and what it emits must be one unambiguous head:
// CRLF lines only, no folding, one framing at most, ending in CRLFCRLF.
func FuzzAppendRequestHead(f *testing.F) {
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: h\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nConnection: x-a, content-length\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n\tb\r\n\r\n",
		"GET / HTTP/1.0\nX: y\n\r\n",
	} {
		f.Add([]byte(s))
	}
	p := newTestBuilder()
	f.Fuzz(func(t *testing.T, raw []byte) {
		ctx := &fasthttp.RequestCtx{}
		ctx.Request.Header.DisableNormalizing()
		if ctx.Request.Header.Read(bufio.NewReader(bytes.NewReader(raw))) != nil {
			return
		}
		ctx.SetRemoteAddr(&net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 1})
		out, rh, err := p.appendRequestHead(nil, ctx, false)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(out, []byte("\r\n\r\n")) {
			t.Fatalf("head does not end in CRLFCRLF: %q", out)
		}
		body := out[:len(out)-2]
		lines := bytes.Split(body[:len(body)-2], []byte("\r\n"))
		framing := 0
		for i, l := range lines {
			if bytes.IndexByte(l, '\n') >= 0 || bytes.IndexByte(l, '\r') >= 0 {
				t.Fatalf("line %d holds a bare CR or LF: %q", i, l)
			}
			if i > 0 && (len(l) == 0 || l[0] == ' ' || l[0] == '\t') {
				t.Fatalf("line %d empty or folded: %q", i, l)
			}
			name, _, _ := bytes.Cut(l, []byte(":"))
			if k := ClassifyField(name); i > 0 && (k == FieldContentLength || k == FieldTransferEncoding) {
				framing++
			}
		}
		if framing > 1 || (rh.Chunked && rh.ContentLength >= 0) {
			t.Fatalf("ambiguous framing (%d fields, %+v): %q", framing, rh, out)
		}
	})
}

// FuzzFilterResponseHead: no panic, and output a clean CRLF head.
func FuzzFilterResponseHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nConnection: keep-alive, x\r\nX: 1\r\nContent-Length: 2\r\n\r\n"))
	f.Add([]byte("HTTP/1.0 204 No Content\nKeep-Alive: 1\n\n"))
	f.Fuzz(func(t *testing.T, block []byte) {
		out, _, _, err := FilterResponseHead(nil, block)
		if err != nil {
			return
		}
		if !bytes.HasSuffix(out, []byte("\r\n\r\n")) && !bytes.Equal(out[len(out)-2:], []byte("\r\n")) {
			t.Fatalf("bad end: %q", out)
		}
	})
}

// FuzzReadChunkSize: no panic, and a size only from a well-formed line.
func FuzzReadChunkSize(f *testing.F) {
	for _, s := range []string{"5\r\n", "a;x=y\r\n", "0\r\n\r\n", "zz\r\n", "5\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		n, err := chunkSizeLine(in)
		if err == nil && (n < 0 || !bytes.Contains(in, []byte("\r\n"))) {
			t.Fatalf("accepted %q as %d", in, n)
		}
	})
}
