// Package demo is `sessiongate demo`: sessiongate with nothing else
// installed. It starts an embedded Redis-protocol server (miniredis) seeded
// with the session and login token of the route's documentation, and a
// stand-in Rocket.Chat on loopback, then points the configuration at both.
// It is for trying sessiongate in a minute, never for production: the data
// lives in memory and the upstream only pretends.
package demo

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/redisstore"
)

// The demo's user, login token and session: those of the route's
// documentation example (Rocket.Chat docs, "Get Current User Session
// Information"), so its curl call works as printed there.
const (
	UserID    = "rbAXPnMktTFbNpwtJ"
	Token     = "4uBKb3a7jl28SM1uIAiXnqGvg9CBre9FA8cWxp8AaA6"
	SessionID = "QoYYFw2t9oKks2niG"
)

// Loopback addresses the demo listens on unless the configuration says
// otherwise: a demo should not be reachable from the network.
const (
	DefaultListen      = "127.0.0.1:8080"
	DefaultAdminListen = "127.0.0.1:9090"
)

// sessionJSON is the documentation's success body without "success":true,
// which is what the data contract stores (docs/data-contract.md). Members stay in the
// documented order.
//
//go:embed session.json
var sessionJSON []byte

// Session returns the seeded session document as compact JSON.
func Session() []byte {
	var b bytes.Buffer
	if err := json.Compact(&b, sessionJSON); err != nil {
		panic("demo: session.json: " + err.Error()) // embedded and tested
	}
	return b.Bytes()
}

// Environ returns environ plus the demo's defaults for the settings it does
// not set: loopback listeners, console logs for a person to read, and an
// access line per request so each curl call shows up. Flags still override
// them, as they override any environment.
func Environ(environ []string) []string {
	defaults := []string{
		"SESSIONGATE_LISTEN=" + DefaultListen,
		"SESSIONGATE_ADMIN_LISTEN=" + DefaultAdminListen,
		"SESSIONGATE_LOG_FORMAT=console",
		"SESSIONGATE_LOG_ACCESS=true",
		"SESSIONGATE_SHUTDOWN_DELAY=0s",
	}
	set := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		set[name] = true
	}
	out := append([]string(nil), environ...)
	for _, kv := range defaults {
		name, _, _ := strings.Cut(kv, "=")
		if !set[name] {
			out = append(out, kv)
		}
	}
	return out
}

// Demo is a running demo environment: the embedded Redis and the stand-in
// upstream. Close stops both.
type Demo struct {
	redis    *miniredis.Miniredis
	upstream *http.Server
	handler  *upstream
	// UpstreamURL and RedisURL are where the demo's servers listen.
	UpstreamURL string
	RedisURL    string

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Start starts the embedded Redis and the stand-in upstream, and rewrites
// cfg to use them: upstream.url and redis.url are replaced, and Redis
// credentials, TLS, Sentinel and Cluster settings are cleared (the embedded
// server has none of them). Listen addresses ending in port 0 are given a
// free port now, so the banner can show it. Once a client can connect to
// cfg.Listen, the banner with the commands to try is written to out.
func Start(cfg *config.Config, log *zap.Logger, out io.Writer) (*Demo, error) {
	var err error
	if cfg.Listen, err = checkListen(cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if cfg.Admin.Listen != "" {
		if cfg.Admin.Listen, err = checkListen(cfg.Admin.Listen); err != nil {
			return nil, fmt.Errorf("admin.listen: %w", err)
		}
	}

	d := &Demo{redis: miniredis.NewMiniRedis()}
	if err := d.redis.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	keys := redisstore.Keys{Prefix: cfg.Redis.KeyPrefix}
	// The token key's value is free in the data contract; a writer may keep
	// metadata there. The demo stores where it came from.
	d.redis.Set(keys.TokenKey(UserID, auth.HashToken(Token)), `{"source":"sessiongate demo"}`)
	d.redis.Set(keys.SessionKey(UserID, SessionID), string(Session()))
	d.RedisURL = "redis://" + d.redis.Addr() + "/0"

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.redis.Close()
		return nil, fmt.Errorf("stand-in upstream: %w", err)
	}
	d.UpstreamURL = "http://" + ln.Addr().String()
	d.handler = newUpstream(log.Named("demo"))
	d.upstream = &http.Server{
		Handler:           d.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          zap.NewStdLog(log.Named("demo")),
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.upstream.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Named("demo").Error("stand-in upstream stopped", zap.Error(err))
		}
	}()

	cfg.Upstream.URL = d.UpstreamURL
	cfg.Redis.URL = d.RedisURL
	cfg.Redis.Username, cfg.Redis.Password, cfg.Redis.TLSCAFile = "", "", ""
	cfg.Redis.Sentinel.Addrs, cfg.Redis.Cluster.Addrs = nil, nil

	ctx, cancel := context.WithCancel(context.Background())
	d.cancel = cancel
	b := banner{
		listen:    cfg.Listen,
		admin:     cfg.Admin.Listen,
		upstream:  d.UpstreamURL,
		redisAddr: d.redis.Addr(),
		prefix:    cfg.Redis.KeyPrefix,
		route:     cfg.Route.Enabled,
	}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := announce(ctx, b, out); err != nil {
			log.Named("demo").Warn("no banner", zap.Error(err))
		}
	}()
	return d, nil
}

// Close stops the banner, the stand-in upstream (cutting its open
// WebSockets) and the embedded Redis, and waits for them.
func (d *Demo) Close() {
	d.cancel()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if d.upstream.Shutdown(ctx) != nil {
		d.upstream.Close()
	}
	d.handler.closeAll() // Shutdown does not track hijacked connections
	d.wg.Wait()
	d.redis.Close()
}

// checkListen binds addr once to find out early whether it is free (a busy
// 127.0.0.1:8080 is the likeliest way a demo fails) and, for port 0, which
// port to use; the proxy binds it again right after. Another process could
// take the port in between; on loopback in a demo that is acceptable.
func checkListen(addr string) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%q: %w (pick another with --listen / --admin.listen, e.g. 127.0.0.1:0)", addr, err)
	}
	defer ln.Close()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("%q: %w", addr, err)
	}
	if port == "0" {
		_, port, _ = net.SplitHostPort(ln.Addr().String())
	}
	return net.JoinHostPort(host, port), nil
}
