package shadow

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"net/url"
	"time"

	"github.com/valyala/fasthttp"
)

// maxBodySize bounds the upstream answer the shadow reads: the route's
// answers are a few kilobytes; a larger one is an upstream error.
const maxBodySize = 1 << 20

// upstream is the shadow's own small client to the Rocket.Chat server,
// separate from the proxy's pool so that comparisons never take a
// connection a client's request could use, and bounded on its own: at most
// one connection per comparison slot, one attempt, Timeout for everything.
type upstream struct {
	client  *fasthttp.HostClient
	host    string // the upstream's host:port, for a request without Host
	isTLS   bool
	timeout time.Duration
}

func newUpstream(rawURL string, insecure bool, maxConns int, timeout time.Duration) (*upstream, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("shadow: upstream url: must be an http:// or https:// URL with a host")
	}
	up := &upstream{host: u.Host, isTLS: u.Scheme == "https", timeout: timeout}
	addr := u.Host
	if u.Port() == "" {
		port := "80"
		if up.isTLS {
			port = "443"
		}
		addr = net.JoinHostPort(u.Hostname(), port)
	}
	up.client = &fasthttp.HostClient{
		Addr:                      addr,
		Name:                      "sessiongate-shadow",
		IsTLS:                     up.isTLS,
		MaxConns:                  maxConns,
		ReadTimeout:               timeout,
		WriteTimeout:              timeout,
		MaxIdleConnDuration:       30 * time.Second,
		MaxResponseBodySize:       maxBodySize,
		MaxIdemponentCallAttempts: 1,
		// The raw request-target goes out as the client sent it.
		DisablePathNormalizing: true,
		// Errors quote no response bytes (they may hold session data).
		SecureErrorLogMessage: true,
	}
	if up.isTLS {
		up.client.TLSConfig = &tls.Config{InsecureSkipVerify: insecure, MinVersion: tls.VersionTLS12}
	}
	return up, nil
}

// fetch sends the route's request as the client sent it — method, raw
// request-target, Host and the credentials X-User-Id and X-Auth-Token,
// every occurrence in order with its original name — with X-Real-IP set to
// realIP (when not empty), and returns the upstream's answer. Nothing else
// of the client's request goes: the route reads nothing else.
func (u *upstream) fetch(h *fasthttp.RequestHeader, realIP string) (*answer, error) {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	req.Header.DisableNormalizing()
	req.Header.SetMethodBytes(h.Method())
	req.SetRequestURIBytes(h.RequestURI())
	host := h.Host()
	if len(host) == 0 {
		host = []byte(u.host)
	}
	req.Header.SetHostBytes(host)
	req.UseHostHeader = true
	if len(h.RawHeaders()) == 0 {
		// A head built in-process rather than parsed: names as set.
		for _, name := range []string{headerUserID, headerAuthToken} {
			if v := h.Peek(name); v != nil {
				req.Header.SetBytesV(name, v)
			}
		}
	} else {
		for k, v := range h.AllInOrder() {
			if isCredential(k) {
				req.Header.AddBytesKV(k, v)
			}
		}
	}
	if realIP != "" {
		req.Header.Set("X-Real-IP", realIP)
	}
	if u.isTLS {
		req.URI().SetScheme("https")
	}
	// Content-Type is compared as sent: no default for a missing one.
	resp.Header.SetNoDefaultContentType(true)
	if err := u.client.DoTimeout(req, resp, u.timeout); err != nil {
		return nil, err
	}
	return snapshot(resp), nil
}

func (u *upstream) close() { u.client.CloseIdleConnections() }

const (
	headerUserID    = "X-User-Id"
	headerAuthToken = "X-Auth-Token"
)

// isCredential reports the route's credential headers, by name in any
// letter case (RFC 9110 §5.1).
func isCredential(name []byte) bool {
	return bytes.EqualFold(name, []byte(headerUserID)) || bytes.EqualFold(name, []byte(headerAuthToken))
}

// sessionID returns the request's sessionId query parameter, decoded and
// cut to 64 bytes of printable ASCII, for log lines: it names the session
// compared and is no credential.
func sessionID(h *fasthttp.RequestHeader) string {
	uri := h.RequestURI()
	i := bytes.IndexByte(uri, '?')
	if i < 0 {
		return ""
	}
	var args fasthttp.Args
	args.ParseBytes(uri[i+1:])
	v := args.Peek("sessionId")
	if len(v) > 64 {
		v = v[:64]
	}
	out := make([]byte, len(v))
	for i, c := range v {
		if c < 0x20 || c > 0x7e {
			c = '?'
		}
		out[i] = c
	}
	return string(out)
}
