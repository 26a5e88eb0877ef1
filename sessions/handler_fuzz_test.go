package sessions

import (
	"bufio"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"
)

// serveFuzzSeeds are FuzzServe's query strings; the differential test runs
// them too.
var serveFuzzSeeds = []string{
	"sessionId=" + seedSession, "", "sessionId=", "sessionId=a%20b", "sessionId=a+b", "sessionId[]=a",
	"sessionId[x]=a", "sessionId=a&sessionId=b", "sessionId=a&x=1", "x=1", "sessionId=theirs",
	"sessionId=%7B", "sessionId=%0D%0A", "[sessionId]=theirs", "sessionId=%zz",
}

// FuzzServe runs the whole handler on arbitrary query strings and header
// values against an in-memory store holding two users, and checks the
// route's invariants: only the four answers docs/route.md allows, always with the
// three headers; a 200 only for valid credentials and only with a document
// of the authenticated user; nothing but 401 without valid credentials.
func FuzzServe(f *testing.F) {
	for _, q := range serveFuzzSeeds {
		f.Add(q, seedUser, seedToken)
		f.Add(q, otherUser, otherToken)
		f.Add(q, seedUser, otherToken)
		f.Add(q, "{"+otherUser+"}", otherToken)
	}
	f.Add("sessionId=theirs", seedUser+"}:session:x", seedToken)
	store := fixtureStore()
	store.addSession(seedUser, "", `{"never":"served"}`)
	h, err := New(Options{Store: store})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, query, user, token string) {
		raw := "GET /api/v1/sessions/info?" + query + " HTTP/1.1\r\nHost: x\r\nX-User-Id: " + user + "\r\nX-Auth-Token: " + token + "\r\n\r\n"
		if strings.ContainsAny(query+user+token, "\r\n") {
			return // would inject headers: not the input under test
		}
		ctx := new(fasthttp.RequestCtx)
		ctx.Request.Header.DisableNormalizing()
		if ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))) != nil {
			return // fasthttp rejects it before any handler runs
		}
		// What the handler saw, after the HTTP parser trimmed white space.
		user, token = string(ctx.Request.Header.Peek(headerUserID)), string(ctx.Request.Header.Peek(headerAuthToken))
		if !nodeAccepts(ctx.Request.Header.RequestURI()) {
			// Node refuses the request line before Rocket.Chat runs: the
			// upstream answers it.
			if h.Serve(ctx) {
				t.Fatalf("answered %d for a request line Node refuses", ctx.Response.StatusCode())
			}
			return
		}
		if !h.Serve(ctx) {
			t.Fatalf("forwarded with a healthy store")
		}
		status, body := ctx.Response.StatusCode(), string(ctx.Response.Body())
		for _, hd := range [][2]string{{"Content-Type", "application/json"}, {"Cache-Control", "no-store"}, {"Pragma", "no-cache"}} {
			if got := string(ctx.Response.Header.Peek(hd[0])); got != hd[1] {
				t.Errorf("%s: got %q, want %q", hd[0], got, hd[1])
			}
		}
		authenticated := (user == seedUser && token == seedToken) || (user == otherUser && token == otherToken)
		if !authenticated {
			if status != 401 || body != want401 {
				t.Fatalf("no valid credentials (%q, %q): got %d %s, want 401", user, token, status, body)
			}
			return
		}
		switch status {
		case 200:
			for key, doc := range store.sessions {
				if key[0] == user && body == doc[:len(doc)-1]+`,"success":true}` && validID([]byte(key[1])) {
					return
				}
			}
			t.Fatalf("user %q got a body that is none of its sessions: %s", user, body)
		case 404:
			if body != want404 {
				t.Fatalf("404 body %s", body)
			}
		case 400:
			if body != want400Req && body != want400Str && body != want400Extra {
				t.Fatalf("400 body %s", body)
			}
		default:
			t.Fatalf("status %d, body %s", status, body)
		}
	})
}
