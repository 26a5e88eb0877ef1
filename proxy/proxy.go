// Package proxy is sessiongate's client-facing server: the route table,
// forwarding to the upstream Rocket.Chat server with streamed bodies,
// WebSocket tunnels, the client-address headers and the access log. On
// Linux, epoll event loops (proxy/internal/loop) serve plain forwarded
// requests and hand every other connection to a fasthttp server.
package proxy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/proxy/internal/h1"
	"github.com/sessiongate/sessiongate/proxy/internal/loop"
)

// Route is one intercepted request: Method and Path must both match the raw
// request line exactly (the path before '?', byte for byte, no decoding or
// cleaning), so every variant a client may send is forwarded untouched.
type Route struct {
	// Method is e.g. "GET".
	Method string
	// Path is the raw path, e.g. "/api/v1/sessions/info".
	Path string
	// Class labels the route in metrics and access logs.
	Class string
	// Serve answers the request and returns true, or returns false without
	// touching the response to have the request forwarded upstream as if
	// the route did not exist. It must not keep ctx or its byte slices.
	Serve func(ctx *fasthttp.RequestCtx) bool
}

// Request classes used in metrics and logs.
const (
	ClassForward   = "forward"
	ClassWebSocket = "websocket"
)

// Options configures a Proxy. main maps the upstream.* and proxy.* keys
// onto it; each field names its key, whose default and meaning are in
// docs/configuration.md. New applies no defaults of its own: a caller other
// than main fills every field as the configuration would.
type Options struct {
	// Upstream is the Rocket.Chat server and the pool of connections to it.
	Upstream Upstream
	// TrustedProxies are the peers whose X-Real-IP / X-Forwarded-* headers
	// are kept (proxy.trusted_proxies). Default none.
	TrustedProxies []netip.Prefix
	// ReadHeaderTimeout bounds reading a request's line and headers
	// (proxy.read_header_timeout).
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes idle client connections and bounds each wait for
	// a byte of a streamed request body (proxy.idle_timeout).
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to a client (proxy.write_timeout).
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request's line plus headers
	// (proxy.max_header_bytes). Required.
	MaxHeaderBytes int
	// MaxConns caps concurrent client connections; 0 means no cap
	// (proxy.max_conns).
	MaxConns int
	// EventLoop serves plain forwarded requests from epoll loops on Linux
	// (proxy.event_loop).
	EventLoop bool
	// EventLoops is how many loops run; 0 means one per GOMAXPROCS but
	// one, at least one (proxy.event_loops).
	EventLoops int
	// AccessLog writes one line per request (log.access).
	AccessLog bool
	// Log receives the proxy's own messages (as "proxy") and the access
	// lines (as "access"). Default: none.
	Log *zap.Logger
	// Registerer receives the proxy's metrics. Required.
	Registerer prometheus.Registerer
	// Routes are the requests answered in process instead of forwarded.
	Routes []Route
}

// Upstream configures forwarding to the Rocket.Chat server (upstream.*).
type Upstream struct {
	// URL is the server, http:// or https://, no path (upstream.url).
	// Required.
	URL string
	// TLSInsecureSkipVerify disables certificate checks for an https
	// upstream (upstream.tls_insecure_skip_verify).
	TLSInsecureSkipVerify bool
	// DialTimeout bounds establishing a connection, TLS included
	// (upstream.dial_timeout).
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for a response's headers and
	// each later wait for a byte of its body
	// (upstream.response_header_timeout).
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout closes pooled connections idle this long
	// (upstream.idle_conn_timeout).
	IdleConnTimeout time.Duration
	// MaxConns caps concurrent upstream connections, WebSocket tunnels not
	// included (upstream.max_conns).
	MaxConns int
}

// Proxy serves clients. Build it with New, run it with Serve, stop it with
// Shutdown; all methods are safe for concurrent use.
type Proxy struct {
	opts    Options
	log     *zap.Logger
	access  *zap.Logger
	routes  []Route
	trusted []netip.Prefix
	server  *fasthttp.Server
	fwd     *forwarder
	tunnels *tunnels
	metrics *metrics
	// acceptErrs counts and logs failed accepts on both paths (accept.go;
	// the back-off rule is proxy/internal/loop's AcceptPace).
	acceptErrs *acceptErrors

	// engine runs the event loops (proxy/internal/loop) while Serve runs
	// with Options.EventLoop; nil otherwise.
	mu       sync.Mutex
	engine   *loop.Engine
	stopping bool
}

// New builds a proxy from opts.
func New(opts Options) (*Proxy, error) {
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	if opts.Registerer == nil {
		return nil, errors.New("proxy: no Registerer")
	}
	if opts.MaxHeaderBytes <= 0 {
		return nil, fmt.Errorf("proxy: MaxHeaderBytes: %d: must be above 0", opts.MaxHeaderBytes)
	}
	p := &Proxy{
		opts:    opts,
		log:     opts.Log.Named("proxy"),
		routes:  opts.Routes,
		trusted: opts.TrustedProxies,
	}
	if opts.AccessLog {
		p.access = opts.Log.Named("access")
	}
	reg := opts.Registerer
	classes := []string{ClassForward, ClassWebSocket}
	for _, r := range opts.Routes {
		classes = append(classes, r.Class)
	}
	var err error
	if p.metrics, err = newMetrics(reg, classes); err != nil {
		return nil, err
	}
	p.metrics.upstreamLog = newRateLog(p.log.With(zap.String("upstream", opts.Upstream.URL)), "upstream errors", upstreamErrorLogInterval)
	if p.acceptErrs, err = newAcceptErrors(p.log, reg); err != nil {
		return nil, err
	}
	if p.fwd, err = newForwarder(&p.opts, p.log, p.metrics); err != nil {
		return nil, err
	}
	p.tunnels = newTunnels(opts.Upstream.ResponseHeaderTimeout, p.fwd.pool.dialer, p.log, p.metrics)
	p.server = p.newServer()
	for _, g := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessiongate", Name: "client_connections",
			Help:        "Client connections open now, by the path serving them: the event loop, or the fasthttp server (connections handed over by the loop, or all of them without it).",
			ConstLabels: prometheus.Labels{"path": "event_loop"},
		}, func() float64 { return float64(p.loopConns()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessiongate", Name: "client_connections",
			Help:        "Client connections open now, by the path serving them: the event loop, or the fasthttp server (connections handed over by the loop, or all of them without it).",
			ConstLabels: prometheus.Labels{"path": "fasthttp"},
		}, func() float64 { return float64(p.server.GetOpenConnectionsCount()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "sessiongate", Name: "event_loop_tunnels",
			Help: "WebSocket tunnels the event loops carry now; the others (TLS upstream, event loop off) have a goroutine per direction.",
		}, func() float64 { return float64(p.loopTunnels()) }),
	} {
		if err := reg.Register(g); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// loopConns is how many client connections the event loops hold.
func (p *Proxy) loopConns() int64 {
	p.mu.Lock()
	e := p.engine
	p.mu.Unlock()
	if e == nil {
		return 0
	}
	return e.OpenConns()
}

// loopTunnels is how many WebSocket tunnels the event loops carry.
func (p *Proxy) loopTunnels() int64 {
	if e := p.tunnels.engine.Load(); e != nil {
		return e.Tunnels()
	}
	return 0
}

// Handler returns the request handler, for in-process tests and benchmarks.
func (p *Proxy) Handler() fasthttp.RequestHandler { return p.handle }

// Serve accepts clients on ln until Shutdown. It returns nil after a
// Shutdown.
//
// With Options.EventLoop on Linux, epoll loops accept on ln and serve plain
// forwarded requests; the fasthttp server gets every connection they hand
// over (proxy/internal/loop says which). Every connection fasthttp reads has
// its chunked request bodies checked on the way in (reqframing.go).
func (p *Proxy) Serve(ln net.Listener) error {
	if !p.opts.EventLoop {
		return p.server.Serve(newFramingListener(newRetryListener(ln, p.acceptErrs), p.opts.MaxHeaderBytes))
	}
	p.mu.Lock()
	if p.stopping {
		p.mu.Unlock()
		return nil
	}
	var e *loop.Engine
	var err error
	handoff := newHandoffListener(ln.Addr())
	// The loops speak plain HTTP only: an https:// upstream leaves every
	// connection to the fasthttp path.
	if p.fwd.pool.dialer.tls == nil {
		e, err = loop.Start(ln, p.loopOptions(handoff))
	}
	if err != nil {
		p.log.Warn("event loop unavailable, serving a goroutine per connection", zap.Error(err))
	}
	if e != nil {
		p.fwd.pool.setShed(e.Shed)
		p.tunnels.engine.Store(e)
	}
	p.engine = e
	p.mu.Unlock()
	if e == nil {
		return p.server.Serve(newFramingListener(newRetryListener(ln, p.acceptErrs), p.opts.MaxHeaderBytes))
	}
	return p.server.Serve(newFramingListener(handoff, p.opts.MaxHeaderBytes))
}

// Shutdown stops accepting and lets in-flight requests finish while it
// closes the WebSocket tunnels gradually, all within ctx's deadline.
// Requests still running at the deadline are cut.
func (p *Proxy) Shutdown(ctx context.Context) error {
	defer p.metrics.upstreamLog.flushNow()
	p.mu.Lock()
	p.stopping = true
	e := p.engine
	p.mu.Unlock()
	// The tunnels close gradually while the requests drain (the loops
	// end only once the tunnels they carry have).
	tunnelsDone := make(chan error, 1)
	go func() { tunnelsDone <- p.tunnels.closeAll(ctx) }()
	var err error
	if e != nil {
		// The loops and the connections they handed over drain
		// side by side.
		done := make(chan error, 1)
		go func() { done <- e.Shutdown(ctx) }()
		err = p.server.ShutdownWithContext(ctx)
		if lerr := <-done; err == nil {
			err = lerr
		}
	} else {
		err = p.server.ShutdownWithContext(ctx)
	}
	if terr := <-tunnelsDone; err == nil {
		err = terr
	}
	p.fwd.close()
	return err
}

// OpenTunnels returns how many WebSocket tunnels are open.
func (p *Proxy) OpenTunnels() int { return p.tunnels.count() }

func (p *Proxy) handle(ctx *fasthttp.RequestCtx) {
	start := time.Now()
	class := ClassForward
	switch {
	case h1.IsWebSocketUpgrade(&ctx.Request.Header):
		class = ClassWebSocket
		p.tunnels.serve(ctx, p.appendHandshakeHead)
	default:
		// A route request the route declined on the event loop before
		// the loop handed the connection over goes upstream as it is.
		if r := p.match(ctx); r != nil && !routeDeclinedOnLoop(ctx) && r.Serve(ctx) {
			class = r.Class
			break
		}
		// The client-address headers are written into the upstream head
		// by appendRequestHead (clientaddr.go), after hop-by-hop removal.
		p.fwd.serve(p, ctx, start)
	}
	p.observe(ctx, class, start)
}

// observe counts ctx's answered request of class, begun at start, and
// writes its access line; the event loop's route answers (loopopts.go) are
// recorded here too.
func (p *Proxy) observe(ctx *fasthttp.RequestCtx, class string, start time.Time) {
	status := ctx.Response.StatusCode()
	elapsed := time.Since(start)
	p.metrics.observe(class, status, elapsed)
	if p.access != nil {
		p.logAccess(ctx, class, status, elapsed)
	}
}

// match returns the route for the raw method and path, or nil.
func (p *Proxy) match(ctx *fasthttp.RequestCtx) *Route {
	return p.route(ctx.Request.Header.Method(), ctx.Request.Header.RequestURI())
}

// route returns the route for a raw method and request-target, or nil.
func (p *Proxy) route(method, path []byte) *Route {
	if i := bytes.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	for i := range p.routes {
		r := &p.routes[i]
		if string(method) == r.Method && string(path) == r.Path {
			return r
		}
	}
	return nil
}

// logAccess writes one access line. The query string is left out: Rocket.Chat
// clients put credentials there (rc_token on file downloads). Headers are
// never logged.
func (p *Proxy) logAccess(ctx *fasthttp.RequestCtx, class string, status int, elapsed time.Duration) {
	uri := ctx.Request.Header.RequestURI()
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		uri = uri[:i]
	}
	p.logAccessLine(ctx.Request.Header.Method(), uri, class, status, elapsed, ctx.RemoteIP().String())
}

// logAccessLine writes an access line for a path already stripped of its
// query.
func (p *Proxy) logAccessLine(method, path []byte, class string, status int, elapsed time.Duration, client string) {
	p.access.Info("request",
		zap.ByteString("method", method),
		zap.ByteString("path", path),
		zap.String("class", class),
		zap.Int("status", status),
		zap.Duration("duration", elapsed),
		zap.String("client", client),
	)
}

// appendHandshakeHead appends a WebSocket handshake's head for the upstream:
// the forwarded head (same filtering, same client-address headers) with
// Upgrade kept and "Connection: Upgrade".
func (p *Proxy) appendHandshakeHead(dst []byte, ctx *fasthttp.RequestCtx) ([]byte, error) {
	head, _, err := p.appendRequestHead(dst, ctx, true)
	return head, err
}

// routeDeclinedOnLoop reports whether ctx's request is a route request the
// route already declined on the event loop, which then handed the
// connection over (the upstream pool was full, or a kept-alive connection
// failed): running the route again would wait for Redis twice and count
// the request twice.
func routeDeclinedOnLoop(ctx *fasthttp.RequestCtx) bool {
	fc, ok := ctx.Conn().(*framingConn)
	if !ok {
		return false
	}
	pc, ok := fc.r.(*loop.PrefixConn)
	return ok && pc.TakeRouteDeclined()
}
