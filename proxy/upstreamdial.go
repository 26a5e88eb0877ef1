package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"time"
)

// upstreamKeepAlive is the TCP keep-alive period of upstream connections.
const upstreamKeepAlive = 30 * time.Second

// upstreamDialer is the one way sessiongate connects to the upstream: the
// forwarding pool, the WebSocket tunnels and the event loop all dial with
// it, so they agree on the address, the timeouts, TCP keep-alive and, for
// an https:// upstream, the TLS configuration.
type upstreamDialer struct {
	addr string // host:port, the scheme's default port if the URL has none
	// tls is nil for an http:// upstream. HTTP/1.1 only, offered by ALPN:
	// forwarding speaks nothing else, and a WebSocket over HTTP/2 is a
	// different handshake (RFC 8441) that the tunnels do not speak.
	tls *tls.Config
	// timeout (upstream.dial_timeout) bounds the TCP connect and the TLS
	// handshake together.
	timeout time.Duration
	net     net.Dialer
}

// newUpstreamDialer builds the dialer for upstream u; skipVerify is
// upstream.tls_insecure_skip_verify.
func newUpstreamDialer(u *url.URL, skipVerify bool, timeout time.Duration) *upstreamDialer {
	d := &upstreamDialer{
		addr:    upstreamDialAddr(u),
		timeout: timeout,
		net:     net.Dialer{Timeout: timeout, KeepAlive: upstreamKeepAlive},
	}
	if u.Scheme == "https" {
		d.tls = &tls.Config{
			ServerName:         u.Hostname(),
			InsecureSkipVerify: skipVerify, //nolint:gosec // an operator's explicit choice (upstream.tls_insecure_skip_verify)
			NextProtos:         []string{"http/1.1"},
			MinVersion:         tls.VersionTLS12,
		}
	}
	return d
}

// dialTCP connects the TCP socket alone, within the dial timeout and ctx.
func (d *upstreamDialer) dialTCP(ctx context.Context) (net.Conn, error) {
	return d.net.DialContext(ctx, "tcp", d.addr)
}

// dial connects to the upstream and, for an https:// upstream, completes
// the TLS handshake, all within the dial timeout and ctx.
func (d *upstreamDialer) dial(ctx context.Context) (net.Conn, error) {
	if d.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.timeout)
		defer cancel()
	}
	conn, err := d.dialTCP(ctx)
	if err != nil || d.tls == nil {
		return conn, err
	}
	tc := tls.Client(conn, d.tls)
	if err := tc.HandshakeContext(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	return tc, nil
}
