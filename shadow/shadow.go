// Package shadow checks sessiongate's answers on GET /api/v1/sessions/info
// against the upstream Rocket.Chat server's own, on live traffic: a sample
// of the route's requests is also sent to the upstream, off the client's
// path, and the two answers are compared — status, body (as JSON values and
// as bytes) and the route's headers. docs/shadow.md is the operator's guide.
//
// A Shadow wraps the route's Serve function. In compare mode clients get
// sessiongate's answer and the upstream's is fetched in the background; in
// origin mode every request of the route is forwarded (clients get the
// upstream's answer, exactly as without sessiongate) and sessiongate's
// answer is worked out in the background. Either way, at most MaxInflight
// comparisons run at once; a sampled request beyond that is not compared
// and is counted as dropped.
package shadow

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/internal/loglimit"
)

// Values of Options.Mode (the words of sessions.shadow.mode).
const (
	ModeCompare = "compare"
	ModeOrigin  = "origin"
)

// Defaults of Options' zero values.
const (
	DefaultMaxInflight = 16
	DefaultTimeout     = 2 * time.Second
)

// logEvery is how often a kind of message (mismatch, upstream failure) is
// logged at most; the ones in between are counted in the next line's
// "suppressed" field and, always, in the metrics.
const logEvery = 10 * time.Second

// Options configures a Shadow.
type Options struct {
	// Rate is the fraction of the route's requests compared, in (0, 1].
	// Required: a Shadow is not built for a rate of 0.
	Rate float64
	// Mode is ModeCompare or ModeOrigin. Default ModeCompare.
	Mode string
	// MaxInflight caps comparisons running at once. Default
	// DefaultMaxInflight.
	MaxInflight int
	// Timeout bounds one request to the upstream, connecting included.
	// Default DefaultTimeout.
	Timeout time.Duration
	// UpstreamURL is the Rocket.Chat server, http:// or https://, no path.
	// Required.
	UpstreamURL string
	// TLSInsecureSkipVerify disables certificate checks for an https
	// upstream. Default false.
	TLSInsecureSkipVerify bool
	// TrustedProxies are the peers whose X-Real-IP is kept
	// (proxy.trusted_proxies), for the client address the shadow's
	// request carries. Default none.
	TrustedProxies []netip.Prefix
	// Log receives the shadow's messages (as "shadow"). Default: none.
	Log *zap.Logger
	// Registerer receives the shadow's metrics. Default: none.
	Registerer prometheus.Registerer
}

// Shadow samples and compares the route's answers. Build it with New, put
// Wrap's function in the route, and Close it after the server has stopped.
// All methods are safe for concurrent use.
type Shadow struct {
	origin   bool
	rate     float64
	max      int64
	inflight atomic.Int64
	up       *upstream
	trusted  []netip.Prefix
	log      *zap.Logger
	metrics  *metrics

	mismatches *loglimit.Limiter
	failures   *loglimit.Limiter

	// lacksRoute is set once the upstream showed it does not have the
	// route; nothing is compared after that, until a restart.
	lacksRoute atomic.Bool

	// mu orders starting a comparison (wg.Add) before Close's wg.Wait.
	mu     sync.RWMutex
	closed bool
	wg     sync.WaitGroup

	sampled func() bool
}

// New builds a Shadow from opts.
func New(opts Options) (*Shadow, error) {
	if !(opts.Rate > 0 && opts.Rate <= 1) {
		return nil, fmt.Errorf("shadow: rate: %v: must be above 0 and at most 1", opts.Rate)
	}
	s := &Shadow{
		rate: opts.Rate, log: opts.Log, trusted: opts.TrustedProxies,
		mismatches: loglimit.New(logEvery), failures: loglimit.New(logEvery),
	}
	switch opts.Mode {
	case "", ModeCompare:
	case ModeOrigin:
		s.origin = true
	default:
		return nil, fmt.Errorf("shadow: mode: %q: must be %s or %s", opts.Mode, ModeCompare, ModeOrigin)
	}
	s.max = int64(opts.MaxInflight)
	if s.max <= 0 {
		s.max = DefaultMaxInflight
	}
	timeout := opts.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	var err error
	if s.up, err = newUpstream(opts.UpstreamURL, opts.TLSInsecureSkipVerify, int(s.max), timeout); err != nil {
		return nil, err
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	s.log = s.log.Named("shadow")
	if s.metrics, err = newMetrics(opts.Registerer, s.inflight.Load); err != nil {
		return nil, err
	}
	s.sampled = func() bool { return s.rate >= 1 || rand.Float64() < s.rate }
	mode := ModeCompare
	if s.origin {
		mode = ModeOrigin
	}
	s.log.Info("shadow mode on", zap.String("mode", mode), zap.Float64("rate", s.rate),
		zap.Int64("max_inflight", s.max), zap.Duration("timeout", timeout))
	return s, nil
}

// Wrap returns route's Serve function with shadowing added; route is the
// route's own (sessions.Handler.Serve): it answers and returns true, or
// returns false to have the request forwarded. The returned function has
// the same contract.
//
// In compare mode the client's answer is route's, unchanged and never
// delayed by the upstream: the comparison starts after route has answered
// and runs in its own goroutine. In origin mode it returns false for every
// request, so the proxy forwards it as if the route were not intercepted.
func (s *Shadow) Wrap(route func(ctx *fasthttp.RequestCtx) bool) func(ctx *fasthttp.RequestCtx) bool {
	if s.origin {
		return func(ctx *fasthttp.RequestCtx) bool {
			if s.sampled() {
				if c := s.start(ctx); c != nil {
					go s.run(c, route)
				}
			}
			return false
		}
	}
	return func(ctx *fasthttp.RequestCtx) bool {
		if !s.sampled() || s.lacksRoute.Load() {
			return route(ctx)
		}
		if !route(ctx) {
			return false // forwarded: the upstream answers for itself
		}
		if ctx.Response.StatusCode() == fasthttp.StatusServiceUnavailable {
			// Redis failed and redis.on_error is "unavailable": not an
			// answer of the route to compare.
			return true
		}
		if c := s.start(ctx); c != nil {
			c.own = snapshot(&ctx.Response)
			go s.run(c, nil)
		}
		return true
	}
}

// comparison is one sampled request: copies of what the comparison needs,
// since ctx is only valid while the route's function runs.
type comparison struct {
	header fasthttp.RequestHeader
	realIP string  // the client's address, as Rocket.Chat is told it
	own    *answer // sessiongate's answer; nil in origin mode until run
}

// start takes a slot for a comparison of ctx's request and copies the
// request's head, or returns nil when the comparison is not to run (the
// upstream lacks the route, Close was called, or every slot is taken).
func (s *Shadow) start(ctx *fasthttp.RequestCtx) *comparison {
	if s.lacksRoute.Load() {
		return nil
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil
	}
	if s.inflight.Add(1) > s.max {
		s.inflight.Add(-1)
		s.metrics.count(resultDropped)
		return nil
	}
	s.wg.Add(1)
	c := &comparison{realIP: s.clientAddr(ctx)}
	ctx.Request.Header.CopyTo(&c.header)
	return c
}

// clientAddr is the X-Real-IP the shadow's request carries: the address a
// forwarded request would give Rocket.Chat (docs/forwarding.md), the peer's own unless
// the peer is a trusted proxy that set one. Rocket.Chat's API rate limiter
// counts requests per address; without it every shadow request would count
// against sessiongate's one address and soon be answered 429.
func (s *Shadow) clientAddr(ctx *fasthttp.RequestCtx) string {
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	for _, pfx := range s.trusted {
		if pfx.Contains(peer) {
			if v := ctx.Request.Header.Peek("X-Real-IP"); len(v) > 0 {
				return string(v)
			}
			break
		}
	}
	if !peer.IsValid() {
		return ""
	}
	return peer.String()
}

// run fetches whatever answer c lacks, compares the two, and counts and
// reports the result. route is the route's function, for origin mode.
func (s *Shadow) run(c *comparison, route func(ctx *fasthttp.RequestCtx) bool) {
	defer func() {
		s.inflight.Add(-1)
		s.wg.Done()
	}()
	if c.own == nil {
		var rc fasthttp.RequestCtx
		c.header.CopyTo(&rc.Request.Header)
		if !route(&rc) || rc.Response.StatusCode() == fasthttp.StatusServiceUnavailable {
			// No answer of sessiongate's own (Redis failed, or the mirror
			// lags); the route's metrics count why.
			return
		}
		c.own = snapshot(&rc.Response)
	}
	up, err := s.up.fetch(&c.header, c.realIP)
	v := compare(c.own, up, err)
	if v.result == resultUpstreamLacksRoute {
		if s.lacksRoute.CompareAndSwap(false, true) {
			s.metrics.count(resultUpstreamLacksRoute)
			s.log.Warn("upstream lacks the route; shadow comparisons stop until restart",
				zap.Int("upstream_status", up.status),
				zap.String("upstream_answer", v.diff))
		}
		return
	}
	s.metrics.count(v.result)
	switch v.result {
	case resultMatch:
	case resultUpstreamError:
		if n, ok := s.failures.Allow(); ok {
			// err comes from the shadow's own client, whose messages hold
			// no request data (SecureErrorLogMessage).
			fields := []zap.Field{zap.Int64("suppressed", n)}
			if err != nil {
				fields = append(fields, zap.Error(err))
			} else {
				fields = append(fields, zap.Int("upstream_status", up.status))
			}
			s.log.Warn("shadow request to the upstream failed", fields...)
		}
	default:
		if n, ok := s.mismatches.Allow(); ok {
			s.log.Warn("shadow answer differs from the upstream's",
				zap.String("result", v.result.String()),
				zap.String("session_id", sessionID(&c.header)),
				zap.Int("status", c.own.status),
				zap.Int("upstream_status", up.status),
				zap.String("diff", v.diff),
				zap.Int64("suppressed", n))
		}
	}
}

// Close stops starting comparisons and waits for the running ones, each
// bounded by the upstream timeout, or until ctx ends. Call it after the
// server has stopped serving, before the Store closes.
func (s *Shadow) Close(ctx context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	defer s.up.close()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.Join(errors.New("shadow: comparisons still running"), ctx.Err())
	}
}

// FromConfig builds the Shadow that cfg's sessions.shadow keys describe, or
// returns nil when sessions.shadow.rate is 0 (shadow mode off). The
// upstream is upstream.url; proxy.trusted_proxies decides the client
// address the shadow's requests carry.
func FromConfig(cfg *config.Config, log *zap.Logger, reg prometheus.Registerer) (*Shadow, error) {
	sc := cfg.Sessions.Shadow
	if sc.Rate == 0 {
		return nil, nil
	}
	var trusted []netip.Prefix
	for _, p := range cfg.Proxy.TrustedProxies {
		pfx, err := config.ParsePrefix(p)
		if err != nil {
			return nil, fmt.Errorf("proxy.trusted_proxies: %q: %w", p, err)
		}
		trusted = append(trusted, pfx)
	}
	return New(Options{
		Rate:                  sc.Rate,
		Mode:                  sc.Mode,
		MaxInflight:           sc.MaxInflight,
		Timeout:               sc.Timeout,
		UpstreamURL:           cfg.Upstream.URL,
		TLSInsecureSkipVerify: cfg.Upstream.TLSInsecureSkipVerify,
		TrustedProxies:        trusted,
		Log:                   log,
		Registerer:            reg,
	})
}
