package h1

import (
	"bufio"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// connTokensHeads are request heads for the Connection-token benchmarks:
// a browser's REST call; a 14 KB head whose Connection field lists 3 500
// tokens (refused now: more than MaxConnTokens); one that splits the same
// bytes between 1 100 tokens and 1 100 short fields (the worst shape for a
// per-field scan of the tokens; refused too); and the worst head still
// accepted, MaxConnTokens-1 tokens and 1 900 short fields, beside the same
// fields without tokens (what those fields cost anyway).
func connTokensHeads() map[string]string {
	const normal = "POST /api/v1/method.call/loadHistory HTTP/1.1\r\n" +
		"Host: chat.example.com\r\n" +
		"User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\r\n" +
		"Accept: */*\r\n" +
		"Accept-Language: en-US,en;q=0.5\r\n" +
		"Accept-Encoding: gzip, deflate, br\r\n" +
		"Referer: https://chat.example.com/channel/general\r\n" +
		"Content-Type: application/json\r\n" +
		"X-User-Id: aobEdbYhXfu5hkeqG\r\n" +
		"X-Auth-Token: 9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq\r\n" +
		"Origin: https://chat.example.com\r\n" +
		"Connection: keep-alive\r\n" +
		"Cookie: rc_uid=aobEdbYhXfu5hkeqG; rc_token=9HqLlyZOugoStsXCUfD_0YdwnNnunAJF8V47U3QHXSq\r\n" +
		"Content-Length: 0\r\n"
	tokens := func(n int) string {
		var b strings.Builder
		for i := range n {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "%x", i)
		}
		return b.String()
	}
	fields := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "f%x:\r\n", i)
		}
		return b.String()
	}
	return map[string]string{
		"normal":             normal + "\r\n",
		"3500-tokens":        normal + "Connection: " + tokens(3500) + "\r\n\r\n",
		"1100-tokens-fields": normal + "Connection: " + tokens(1100) + "\r\n" + fields(1100) + "\r\n",
		"63-tokens-fields":   normal + "Connection: " + tokens(MaxConnTokens-1) + "\r\n" + fields(1900) + "\r\n",
		"fields":             normal + fields(1900) + "\r\n",
	}
}

// BenchmarkConnectionTokens compares building the upstream head and
// filtering a response head for a normal head and heads full of
// Connection tokens: the cost per byte must stay about the same (a refused
// head counts what it costs to refuse it).
func BenchmarkConnectionTokens(b *testing.B) {
	heads := connTokensHeads()
	p := newTestBuilder()
	for _, name := range []string{"normal", "3500-tokens", "1100-tokens-fields", "63-tokens-fields", "fields"} {
		raw := heads[name]
		b.Run("request/"+name, func(b *testing.B) {
			ctx := &fasthttp.RequestCtx{}
			ctx.Request.Header.DisableNormalizing()
			if err := ctx.Request.Header.Read(bufio.NewReaderSize(strings.NewReader(raw), 32<<10)); err != nil {
				b.Fatalf("parse: %v", err)
			}
			var dst []byte
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				dst, _, err = p.appendRequestHead(dst[:0], ctx, false)
				if err != nil && !errors.Is(err, ErrConnTokens) {
					b.Fatal(err)
				}
			}
		})
		resp := []byte("HTTP/1.1 200 OK" + raw[strings.Index(raw, "\r\n"):])
		b.Run("response/"+name, func(b *testing.B) {
			var dst []byte
			b.SetBytes(int64(len(resp)))
			b.ReportAllocs()
			for b.Loop() {
				var err error
				dst, _, _, err = FilterResponseHead(dst[:0], resp)
				if err != nil && !errors.Is(err, ErrConnTokens) {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestConnTokensIndexed: past the inline slots the tokens are found through
// the hash index, in any case, and a head listing more than MaxConnTokens
// is refused whole.
func TestConnTokensIndexed(t *testing.T) {
	var tokens ConnTokens
	var list []string
	for i := range MaxConnTokens {
		list = append(list, fmt.Sprintf("X-Hop-%d", i))
	}
	// Two fields, the second with repeats and odd spacing.
	if err := tokens.Add([]byte(strings.Join(list[:40], ","))); err != nil {
		t.Fatal(err)
	}
	if err := tokens.Add([]byte(" " + strings.Join(list[40:], " , ") + ", ,")); err != nil {
		t.Fatal(err)
	}
	for i, tok := range list {
		if !tokens.Names([]byte(strings.ToUpper(tok))) || !tokens.Names([]byte(strings.ToLower(tok))) {
			t.Errorf("token %d (%s) not found", i, tok)
		}
	}
	for _, name := range []string{"X-Hop-64", "X-Hop-", "X-Hop-1x", "Host", ""} {
		if tokens.Names([]byte(name)) {
			t.Errorf("names(%q) = true, want false", name)
		}
	}
	if err := tokens.Add([]byte("one-more")); !errors.Is(err, ErrConnTokens) {
		t.Errorf("token %d: got %v, want ErrConnTokens", MaxConnTokens+1, err)
	}

	// Through both head functions: the 60th token's field is dropped;
	// one token more and the head is refused.
	head := func(n int) string {
		return "Connection: " + strings.Join(list[:n], ", ") + "\r\nx-hop-59: secret\r\nX-Keep: k\r\n"
	}
	p := newTestBuilder()
	ctx := fwdParseRequest(t, "GET / HTTP/1.1\r\nHost: h\r\n"+head(MaxConnTokens)+"\r\n", "192.0.2.1:1")
	out, _, err := p.appendRequestHead(nil, ctx, false)
	if err != nil || strings.Contains(string(out), "secret") || !strings.Contains(string(out), "X-Keep: k") {
		t.Errorf("request with %d tokens: got %q, %v", MaxConnTokens, out, err)
	}
	out, _, _, err = FilterResponseHead(nil, []byte("HTTP/1.1 200 OK\r\n"+head(MaxConnTokens)+"\r\n"))
	if err != nil || strings.Contains(string(out), "secret") || !strings.Contains(string(out), "X-Keep: k") {
		t.Errorf("response with %d tokens: got %q, %v", MaxConnTokens, out, err)
	}
	list = append(list, "X-Hop-64")
	ctx = fwdParseRequest(t, "GET / HTTP/1.1\r\nHost: h\r\n"+head(MaxConnTokens+1)+"\r\n", "192.0.2.1:1")
	if _, _, err := p.appendRequestHead(nil, ctx, false); !errors.Is(err, ErrConnTokens) {
		t.Errorf("request with %d tokens: got %v, want ErrConnTokens", MaxConnTokens+1, err)
	}
	if _, _, _, err := FilterResponseHead(nil, []byte("HTTP/1.1 200 OK\r\n"+head(MaxConnTokens+1)+"\r\n")); !errors.Is(err, ErrBadResponse) {
		t.Errorf("response with %d tokens: got %v, want ErrBadResponse", MaxConnTokens+1, err)
	}
}
