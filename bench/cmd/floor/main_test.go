package main

import (
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
)

// The floor is only a fair baseline if it answers the route correctly:
// the same statuses and bodies sessiongate must give (docs/route.md).
func TestFloorAnswers(t *testing.T) {
	mr := miniredis.RunT(t)
	sum := sha256.Sum256([]byte("tok"))
	hashed := base64.StdEncoding.EncodeToString(sum[:])
	mr.Set("rc:{u1}:token:"+hashed, "{}")
	mr.Set("rc:{u1}:session:s1", `{"sessionId":"s1","userId":"u1"}`)

	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	f := &floor{rdb: rdb, prefix: "rc:", timeout: time.Second}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fasthttp.Server{Handler: f.handle}
	go s.Serve(ln)
	t.Cleanup(func() { s.Shutdown() })
	base := "http://" + ln.Addr().String()

	for _, c := range []struct {
		name, query, user, token string
		wantStatus               int
		wantBody                 string
	}{
		{"hit", "?sessionId=s1", "u1", "tok", 200, `{"sessionId":"s1","userId":"u1","success":true}`},
		{"bad token", "?sessionId=s1", "u1", "nope", 401, string(body401)},
		{"no token", "?sessionId=s1", "u1", "", 401, string(body401)},
		{"missing session", "?sessionId=s2", "u1", "tok", 404, string(body404)},
		{"someone else's user", "?sessionId=s1", "u2", "tok", 401, string(body401)},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/api/v1/sessions/info"+c.query, nil)
			req.Header.Set("X-User-Id", c.user)
			if c.token != "" {
				req.Header.Set("X-Auth-Token", c.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != c.wantStatus || string(b) != c.wantBody {
				t.Errorf("got %d %s want %d %s", resp.StatusCode, b, c.wantStatus, c.wantBody)
			}
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("Cache-Control: got %q want no-store", got)
			}
		})
	}
}
