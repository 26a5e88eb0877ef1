// Command floor is the practical floor for sessiongate's intercepted route:
// the least a fasthttp + go-redis server can do to answer
// GET /api/v1/sessions/info — hash the token, fetch the token key and the
// session key in one pipeline (docs/route.md: one round trip), answer 401, 404 or
// 200 with the stored document. No routing table, no parameter validation
// beyond sessionId, no metrics, no logs. sessiongate's route is measured
// against it: whatever sessiongate costs on top of this is its own.
//
// Keys follow the data contract of docs/data-contract.md, written out here rather than
// imported, so that the floor does not share a bug with the code it is
// compared with.
//
// It prints "listening <addr>" on stdout once it accepts connections.
package main

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
)

var (
	body401 = []byte(`{"status":"error","message":"You must be logged in to do this."}`)
	body404 = []byte(`{"success":false,"error":"Session not found"}`)
	body503 = []byte(`{"success":false,"error":"Service unavailable"}`)
)

type floor struct {
	rdb     *redis.Client
	prefix  string
	timeout time.Duration
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	redisURL := flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
	prefix := flag.String("prefix", "rc:", "key prefix (docs/data-contract.md)")
	flag.Parse()

	opts, err := redis.ParseURL(*redisURL)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor: redis URL:", err)
		os.Exit(2)
	}
	// The same client settings sessiongate uses (redisstore.NewClient):
	// RESP2, no CLIENT SETINFO, no retries, 250 ms deadline.
	opts.Protocol = 2
	opts.DisableIdentity = true
	opts.MaxRetries = -1
	opts.ContextTimeoutEnabled = true
	f := &floor{rdb: redis.NewClient(opts), prefix: *prefix, timeout: 250 * time.Millisecond}

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
	s := &fasthttp.Server{Handler: f.handle, NoDefaultServerHeader: true, NoDefaultDate: true}
	fmt.Printf("listening %s\n", ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		os.Exit(0)
	}()
	if err := s.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

func (f *floor) handle(ctx *fasthttp.RequestCtx) {
	if !ctx.IsGet() || string(ctx.Path()) != "/api/v1/sessions/info" {
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		return
	}
	h := &ctx.Response.Header
	h.SetContentType("application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")

	userID := ctx.Request.Header.Peek("X-User-Id")
	token := ctx.Request.Header.Peek("X-Auth-Token")
	if len(userID) == 0 || len(token) == 0 {
		answer(ctx, fasthttp.StatusUnauthorized, body401)
		return
	}
	// Meteor's Accounts._hashLoginToken: base64(sha256(token)).
	sum := sha256.Sum256(token)
	hashed := base64.StdEncoding.EncodeToString(sum[:])
	sessionID := ctx.QueryArgs().Peek("sessionId")

	rctx, cancel := context.WithTimeout(context.Background(), f.timeout)
	defer cancel()
	pipe := f.rdb.Pipeline()
	tok := pipe.Get(rctx, f.prefix+"{"+string(userID)+"}:token:"+hashed)
	sess := pipe.Get(rctx, f.prefix+"{"+string(userID)+"}:session:"+string(sessionID))
	_, err := pipe.Exec(rctx)
	switch {
	case err != nil && !errors.Is(err, redis.Nil):
		answer(ctx, fasthttp.StatusServiceUnavailable, body503)
	case errors.Is(tok.Err(), redis.Nil):
		answer(ctx, fasthttp.StatusUnauthorized, body401)
	case errors.Is(sess.Err(), redis.Nil):
		answer(ctx, fasthttp.StatusNotFound, body404)
	default:
		doc := sess.Val()
		if len(doc) < 2 || doc[len(doc)-1] != '}' {
			answer(ctx, fasthttp.StatusServiceUnavailable, body503)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusOK)
		ctx.Response.AppendBodyString(doc[:len(doc)-1])
		ctx.Response.AppendBodyString(`,"success":true}`)
	}
}

func answer(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.SetStatusCode(status)
	ctx.Response.SetBodyRaw(body)
}
