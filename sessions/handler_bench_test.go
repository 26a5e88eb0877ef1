package sessions_test

// The handler's benchmark runs against a real redis-server through
// redisstore, as in production. It imports go-redis directly only for the
// baseline: the minimal fasthttp handler doing the same two GETs in one
// pipeline, the practical floor of this design.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/redisstore"
	"github.com/sessiongate/sessiongate/sessions"
)

const (
	benchUser    = "rbAXPnMktTFbNpwtJ"
	benchToken   = "4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6"
	benchSession = "QoYYFw2t9oKks2niG"
	benchPrefix  = "rc:"
	// benchDoc is the seed's session document (~900 bytes), as stored.
	benchDoc = `{"_id":"646ceae9a8c3a3ba32d0e897","type":"session","sessionId":"QoYYFw2t9oKks2niG","instanceId":"f0313fa9-ebe6-4a84-8580-3104f6a09988","loginToken":"orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU=","ip":"172.20.0.2","host":"localhost:3000","device":{"type":"browser","name":"Chrome","longVersion":"113.0.0.0","os":{"name":"Windows","version":"10"},"version":"113.0.0"},"userId":"rbAXPnMktTFbNpwtJ","roles":["user","admin","livechat-agent","livechat-manager"],"mostImportantRole":"admin","loginAt":"2023-05-23T16:33:45.202Z","day":23,"month":5,"year":2023,"searchTerm":"ChromebrowserWindowsQoYYFw2t9oKks2niGrbAXPnMktTFbNpwtJ","createdAt":"2023-05-23T16:33:45.203Z","_updatedAt":"2023-05-23T17:56:31.599Z","closedAt":"2023-05-23T17:56:31.599Z","lastActivityAt":"2023-05-23T17:56:31.599Z"}`
)

// benchRedis starts a redis-server on a free loopback port for b, seeded
// with one user, token and session, and returns a client built like
// production's.
func benchRedis(b *testing.B) redis.UniversalClient {
	b.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		b.Skip("redis-server not on PATH")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", b.TempDir())
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	rdb, err := redisstore.NewClient(&config.Redis{URL: "redis://" + addr + "/0", Timeout: time.Second, DialTimeout: 2 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	for deadline := time.Now().Add(10 * time.Second); rdb.Ping(ctx).Err() != nil; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatal("redis-server did not start")
		}
	}
	keys := redisstore.Keys{Prefix: benchPrefix}
	rdb.Set(ctx, keys.TokenKey(benchUser, auth.HashToken(benchToken)), `{"when":"2023-05-23T16:33:45.202Z"}`, 0)
	rdb.Set(ctx, keys.SessionKey(benchUser, benchSession), benchDoc, 0)
	return rdb
}

// benchRequest parses a raw request once, as the server would.
func benchRequest(b *testing.B, token, sessionID string) *fasthttp.RequestCtx {
	raw := "GET /api/v1/sessions/info?sessionId=" + sessionID + " HTTP/1.1\r\nHost: chat.example\r\nUser-Agent: bench\r\nAccept: */*\r\n" +
		"X-User-Id: " + benchUser + "\r\nX-Auth-Token: " + token + "\r\n\r\n"
	ctx := new(fasthttp.RequestCtx)
	ctx.Request.Header.DisableNormalizing()
	ctx.Response.Header.DisableNormalizing()
	if err := ctx.Request.Read(bufio.NewReader(strings.NewReader(raw))); err != nil {
		b.Fatal(err)
	}
	return ctx
}

// BenchmarkHandler measures the route (impl=route: sessions.Handler on
// redisstore) next to the minimal pipeline handler (impl=pipeline), per
// outcome, with 16 concurrent requests on a warm local redis-server.
//
//	go test -run '^$' -bench Handler -benchmem ./sessions/
func BenchmarkHandler(b *testing.B) {
	rdb := benchRedis(b)
	route, err := sessions.New(sessions.Options{Store: redisstore.New(rdb, benchPrefix), Timeout: time.Second})
	if err != nil {
		b.Fatal(err)
	}
	impls := []struct {
		name  string
		serve func(*fasthttp.RequestCtx)
	}{
		{"route", func(ctx *fasthttp.RequestCtx) { route.Serve(ctx) }},
		{"pipeline", pipelineHandler(rdb, benchPrefix)},
	}
	outcomes := []struct {
		name, token, sessionID string
		status                 int
	}{
		{"ok", benchToken, benchSession, 200},
		{"unauthorized", "wrong-token", benchSession, 401},
		{"not_found", benchToken, "nope", 404},
	}
	for _, impl := range impls {
		for _, o := range outcomes {
			b.Run("impl="+impl.name+"/outcome="+o.name, func(b *testing.B) {
				check := benchRequest(b, o.token, o.sessionID)
				impl.serve(check)
				if got := check.Response.StatusCode(); got != o.status {
					b.Fatalf("status %d, want %d: %s", got, o.status, check.Response.Body())
				}
				b.ReportAllocs()
				b.SetParallelism(8)
				cpu, cpuOK := processCPU()
				b.RunParallel(func(pb *testing.PB) {
					ctx := benchRequest(b, o.token, o.sessionID)
					for pb.Next() {
						ctx.Response.Reset()
						ctx.Response.Header.DisableNormalizing()
						impl.serve(ctx)
					}
				})
				// Wall time per op is mostly Redis latency and, on a shared
				// machine, noise; the CPU this process spent per op (user +
				// system, redis-server excluded) is the route's own cost.
				if cpu1, _ := processCPU(); cpuOK {
					b.ReportMetric(float64(cpu1-cpu)/float64(b.N), "cpu-ns/op")
				}
			})
		}
	}
}

// pipelineHandler is the baseline: what anyone would write first with
// fasthttp and go-redis. No id checks, no query validation, no deadline,
// no metrics.
func pipelineHandler(rdb redis.UniversalClient, prefix string) fasthttp.RequestHandler {
	return func(ctx *fasthttp.RequestCtx) {
		user := string(ctx.Request.Header.Peek("X-User-Id"))
		sum := sha256.Sum256(ctx.Request.Header.Peek("X-Auth-Token"))
		sessionID := string(ctx.QueryArgs().Peek("sessionId"))
		pipe := rdb.Pipeline()
		token := pipe.Get(context.Background(), prefix+"{"+user+"}:token:"+base64.StdEncoding.EncodeToString(sum[:]))
		session := pipe.Get(context.Background(), prefix+"{"+user+"}:session:"+sessionID)
		pipe.Exec(context.Background())
		ctx.Response.Header.SetContentType("application/json")
		switch {
		case token.Err() != nil:
			ctx.SetStatusCode(401)
			ctx.Response.SetBodyString(`{"status":"error","message":"You must be logged in to do this."}`)
		case session.Err() != nil:
			ctx.SetStatusCode(404)
			ctx.Response.SetBodyString(`{"success":false,"error":"Session not found"}`)
		default:
			doc := session.Val()
			ctx.Response.SetBodyString(doc[:len(doc)-1])
			ctx.Response.AppendBodyString(`,"success":true}`)
		}
	}
}

// constStore answers every lookup with the same document and allocates
// nothing, so BenchmarkServeOwnCost shows the handler's own cost without
// Redis or go-redis.
type constStore struct{}

func (constStore) Session(context.Context, []byte, []byte, []byte) (string, error) {
	return benchDoc, nil
}
func (constStore) Authenticate(context.Context, []byte, []byte) error { return nil }

// BenchmarkServeOwnCost: header and query parsing, token hashing, the
// deadline, JSON check, body and metrics, on the success path.
//
//	go test -run '^$' -bench ServeOwnCost -benchmem ./sessions/
func BenchmarkServeOwnCost(b *testing.B) {
	h, err := sessions.New(sessions.Options{Store: constStore{}})
	if err != nil {
		b.Fatal(err)
	}
	ctx := benchRequest(b, benchToken, benchSession)
	b.ReportAllocs()
	for b.Loop() {
		ctx.Response.Reset()
		ctx.Response.Header.DisableNormalizing()
		h.Serve(ctx)
	}
	if ctx.Response.StatusCode() != 200 {
		b.Fatalf("status %d", ctx.Response.StatusCode())
	}
}
