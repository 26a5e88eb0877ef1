package loop

import (
	"context"
	"net"
	"net/netip"
	"runtime"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// Options is everything the loops need from the proxy they serve: its
// limits and timeouts, and hooks for what only the proxy knows (the routes,
// the client-address rule, the upstream connections, the metrics and the
// logs). Every field is required unless it says otherwise.
type Options struct {
	// Loops is how many loops run; 0 means DefaultLoops.
	Loops int
	// MaxConns caps the client connections of both paths together (the
	// loops' and OtherConns); 0 means no cap.
	MaxConns int
	// MaxHeaderBytes bounds a request's line plus headers.
	MaxHeaderBytes int
	// ReadHeaderTimeout bounds reading a request head; 0 means no bound.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a client connection idle between requests.
	IdleTimeout time.Duration
	// ClientBodyTimeout bounds each wait for a byte of a request body; 0
	// means no bound.
	ClientBodyTimeout time.Duration
	// WriteTimeout bounds each wait to write to a client; 0 means no
	// bound.
	WriteTimeout time.Duration
	// ResponseHeaderTimeout bounds the dial plus the wait for a response
	// head, and each later wait for a byte of the response body.
	ResponseHeaderTimeout time.Duration
	// UpstreamIdleTimeout closes upstream connections idle this long.
	UpstreamIdleTimeout time.Duration

	// Handoff takes a connection the loop does not serve (see the package
	// comment), with the bytes already read in front. It must not block.
	Handoff func(net.Conn)
	// OtherConns is how many client connections the fasthttp path holds,
	// for MaxConns.
	OtherConns func() int64
	// Routed reports whether a raw method and request-target belong to an
	// intercepted route.
	Routed func(method, target []byte) bool
	// Route answers a bodiless request of an intercepted route while its
	// connection stays on the loop; nil hands such connections over. It
	// is called on the loop with the request's head h, which is the
	// loop's and valid only during the call, and the client's address;
	// the function it returns runs on a goroutine of its own (the route
	// may wait for Redis or a verifier) and must not touch h.
	Route func(h *fasthttp.RequestHeader, peer netip.Addr) RouteFunc
	// HeadOptions is what the upstream head built for a request from peer
	// must know of the connection (h1.AppendRequestHead).
	HeadOptions func(peer netip.Addr) h1.RequestOptions
	// Dial connects a plain TCP socket to the upstream; the loop takes a
	// duplicate of the socket and closes the connection it returned.
	Dial func(ctx context.Context) (net.Conn, error)
	// Pool counts the upstream connections the loops hold against the
	// proxy's limit.
	Pool Pool
	// Metrics counts what the loops do.
	Metrics Metrics
	// Access writes an access line for a forwarded request (path without
	// its query); nil when there is no access log.
	Access func(method, path []byte, status int, elapsed time.Duration, client string)
	// AcceptError counts and logs a failed accept (reason from
	// AcceptErrorReason) that waits retryIn before the next one.
	AcceptError func(reason string, err error, retryIn time.Duration)
	// Log receives the loop's own messages.
	Log *zap.Logger
}

// RouteFunc answers a route's request: it appends the whole response to dst
// (with "Connection: close" when closeConn is set, or when it chooses to
// close) and says whether the connection must close after it. Forward
// reports that the route declined the request, which the loop then forwards
// like any other.
type RouteFunc func(dst []byte, closeConn bool) RouteAnswer

// RouteAnswer is what a RouteFunc produced.
type RouteAnswer struct {
	// Resp is the response's bytes, dst extended.
	Resp []byte
	// Close asks the loop to close the connection once Resp is written.
	Close bool
	// Forward: Resp is empty and the request goes upstream.
	Forward bool
}

// Pool is the proxy's count of open upstream connections, which the loops'
// own connections share with the fasthttp path.
type Pool interface {
	// Reserve counts one more connection if the limit allows it.
	Reserve() bool
	// Release uncounts a connection that closed (or was never dialed).
	Release()
	// Wanted reports requests waiting for a connection: one going idle
	// in a loop is closed to make room for them instead.
	Wanted() bool
}

// Metrics receives what the loops count.
type Metrics interface {
	// Answered counts a request the loop answered itself.
	Answered(status int, elapsed time.Duration)
	// HandedOff counts a connection handed over, by the reason of the
	// request that did not fit the loop.
	HandedOff(reason string)
	// UpstreamFailed counts an upstream failure of kind.
	UpstreamFailed(kind exchange.FailureKind)
}

// DefaultLoops is how many loops run when Options.Loops is 0: one per
// GOMAXPROCS but one, and at least one. The processor left over runs what
// is not on a loop (route lookups waiting for Redis, the fasthttp path,
// the collector); and with fewer loops a light load wakes fewer of them: in
// the rcmix case on 2 cores one loop took 1.01–1.10× nginx's CPU where two
// took 1.25–1.33×. Measured again later, the mix cost about the same with
// either, and two loops came closer to nginx's forwarded-GET rate under
// full load (0.97–0.99× against 0.80–0.93×; docs/performance.md).
func DefaultLoops() int { return max(1, runtime.GOMAXPROCS(0)-1) }
