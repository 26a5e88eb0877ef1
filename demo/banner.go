package demo

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// banner is what the demo prints once sessiongate accepts connections.
type banner struct {
	listen    string // sessiongate's client address, host:port
	admin     string // admin address, or "" when disabled
	upstream  string // the stand-in's URL
	redisAddr string // the embedded Redis, host:port
	prefix    string // redis.key_prefix
	route     bool   // route.enabled
}

// announce waits (bounded) until a client can connect to b.listen, then
// writes the banner to out. It gives up when ctx ends.
func announce(ctx context.Context, b banner, out io.Writer) error {
	addr := dialAddr(b.listen)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("sessiongate not accepting on %s after 15s: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(20 * time.Millisecond):
		}
	}
	_, err := io.WriteString(out, b.String())
	return err
}

// dialAddr turns a listen address into one a local client can dial: an
// unspecified host (":8080", "0.0.0.0:8080", "[::]:8080") means loopback.
func dialAddr(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return net.JoinHostPort(host, port)
}

// String renders the banner: what runs where, and the exact commands to try.
// The login token is printed on purpose: it is the public example token of
// Rocket.Chat's documentation, valid only against this in-memory Redis.
func (b banner) String() string {
	base := "http://" + dialAddr(b.listen)
	route := base + "/api/v1/sessions/info?sessionId="
	creds := fmt.Sprintf("-H 'X-User-Id: %s' -H 'X-Auth-Token: %s'", UserID, Token)
	answeredBy := "sessiongate answers the route from Redis"
	if !b.route {
		answeredBy = "route.enabled is false, so these are forwarded to the stand-in upstream instead"
	}

	var s strings.Builder
	line := func(format string, args ...any) { fmt.Fprintf(&s, format+"\n", args...) }
	rule := strings.Repeat("=", 78)
	line("")
	line(rule)
	line(" sessiongate DEMO: for trying sessiongate out, not for production.")
	line(" Redis is embedded and in memory; the Rocket.Chat behind it is a stand-in.")
	line(rule)
	line(" sessiongate   %s", base)
	if b.admin != "" {
		line(" admin         http://%s  (/healthz, /readyz, /metrics)", dialAddr(b.admin))
	}
	line(" upstream      %s  stand-in Rocket.Chat: /api/info, /api/v1/me, WebSocket echo on /websocket", b.upstream)
	line(" redis         %s  embedded, seeded with one login token and one session:", b.redisAddr)
	line("               %s{%s}:token:<SHA-256 of the token, base64>", b.prefix, UserID)
	line("               %s{%s}:session:%s", b.prefix, UserID, SessionID)
	line("")
	line("Try, in another terminal (%s):", answeredBy)
	line("")
	line("  # 200: the stored session, with \"success\":true appended")
	line("  curl -i '%s%s' %s", route, SessionID, creds)
	line("")
	line("  # 401: a login token that is not in Redis")
	line("  curl -i '%s%s' -H 'X-User-Id: %s' -H 'X-Auth-Token: not-a-valid-token'", route, SessionID, UserID)
	line("")
	line("  # 404: a session this user does not have")
	line("  curl -i '%s%s' %s", route, "noSuchSession", creds)
	line("")
	line("  # 200 from the stand-in Rocket.Chat: everything else is forwarded unchanged")
	line("  curl -i '%s/api/info'", base)
	line("")
	line("  # 401 from the stand-in Rocket.Chat, forwarded back as it answered")
	line("  curl -i '%s/api/v1/me'", base)
	line("")
	line("  # a WebSocket through sessiongate to the stand-in's echo (with websocat, if installed)")
	line("  websocat 'ws://%s/websocket'", dialAddr(b.listen))
	if b.admin != "" {
		admin := "http://" + dialAddr(b.admin)
		line("")
		line("  # probes and metrics")
		line("  curl -i '%s/healthz'", admin)
		line("  curl -i '%s/readyz'", admin)
		line("  curl -s '%s/metrics' | grep '^sessiongate_'", admin)
	}
	host, port, _ := net.SplitHostPort(b.redisAddr)
	line("")
	line("  # the keys in the embedded Redis (with redis-cli, if installed)")
	line("  redis-cli -h %s -p %s --scan", host, port)
	line("")
	line("Stop with Ctrl-C.")
	line("")
	return s.String()
}
