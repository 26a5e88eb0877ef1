// Command sessiongate is a reverse-proxy sidecar for Rocket.Chat: it answers
// GET /api/v1/sessions/info from Redis and forwards everything else to the
// Rocket.Chat server unchanged. See README.md.
package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sync/errgroup"

	"github.com/sessiongate/sessiongate/admin"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/demo"
	"github.com/sessiongate/sessiongate/mirror"
	"github.com/sessiongate/sessiongate/proxy"
	"github.com/sessiongate/sessiongate/redisstore"
	"github.com/sessiongate/sessiongate/sessions"
	"github.com/sessiongate/sessiongate/shadow"
)

// Exit statuses.
const (
	exitOK     = 0
	exitFailed = 1 // a runtime failure
	exitConfig = 2 // bad configuration or a listen address that cannot be bound
)

func main() {
	os.Exit(run(os.Args[1:], os.Environ(), os.Stdout, os.Stderr))
}

// run is the whole program; it returns the exit status.
func run(args, environ []string, stdout, stderr io.Writer) int {
	cmd := ""
	if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
		cmd, args = args[0], args[1:]
	}
	c, ok := lookupCommand(cmd)
	if !ok {
		fmt.Fprintf(stderr, "sessiongate: unknown command %q (see sessiongate help)\n", cmd)
		return exitConfig
	}
	if cmd == "" && len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		cmd = "version"
	}
	if name, ok := misplacedCommand(args); cmd == "" && ok {
		fmt.Fprintf(stderr, "sessiongate: the command must come first: sessiongate %s [flags]\n", name)
		return exitConfig
	}
	switch cmd {
	case "version":
		fmt.Fprintf(stdout, "sessiongate %s\n", versionString())
		return exitOK
	case "help":
		if len(args) > 0 {
			if c, ok = lookupCommand(args[0]); !ok || args[0] == "" {
				fmt.Fprintf(stderr, "sessiongate: unknown command %q (see sessiongate help)\n", args[0])
				return exitConfig
			}
		} else {
			c, _ = lookupCommand("")
		}
		usage(stdout, c)
		return exitOK
	}

	if cmd == "demo" {
		environ = demo.Environ(environ) // loopback listeners and console logs unless set
	}
	cfg, err := config.LoadWith(args, environ, c.flags)
	if errors.Is(err, config.ErrHelp) {
		usage(stdout, c)
		return exitOK
	}
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "sessiongate: %s\n", line)
		}
		if strings.HasPrefix(err.Error(), "flags: ") {
			fmt.Fprintf(stderr, "sessiongate: %s lists the flags\n", strings.TrimSpace("sessiongate "+cmd+" --help"))
		}
		return exitConfig
	}
	if cmd == "healthcheck" {
		// For container HEALTHCHECKs: the image has no shell or curl.
		if cfg.Admin.Listen == "" {
			fmt.Fprintln(stderr, "sessiongate: healthcheck: admin.listen is empty")
			return exitFailed
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if err := admin.Probe(ctx, cfg.Admin.Listen); err != nil {
			fmt.Fprintf(stderr, "sessiongate: healthcheck: %v\n", err)
			return exitFailed
		}
		return exitOK
	}
	if cmd == "check-config" {
		if err := config.Print(stdout, cfg); err != nil {
			fmt.Fprintf(stderr, "sessiongate: %v\n", err)
			return exitFailed
		}
		printEra(stdout, cfg)
		return exitOK
	}

	log, err := newLogger(&cfg.Log, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "sessiongate: %v\n", err)
		return exitConfig
	}
	defer log.Sync()

	// go-redis has one process-wide logger: its lines join the JSON stream.
	redisstore.SetLogger(log)

	// The only place besides main that ends the process: a second signal
	// during the drain.
	ctx, stop := notifyContext(log, os.Exit)
	defer stop()
	if cmd == "mirror" {
		return runMirror(ctx, cfg, log, stderr)
	}
	if cmd == "demo" {
		// Points cfg at an embedded Redis and a stand-in upstream; stopped
		// after serve has drained.
		d, err := demo.Start(cfg, log, stdout)
		if err != nil {
			fmt.Fprintf(stderr, "sessiongate: demo: %v\n", err)
			return exitConfig // almost always a listen address in use
		}
		defer d.Close()
	}
	return serve(ctx, cfg, log, stderr)
}

// serve runs the proxy and the admin listener until ctx ends, then drains:
// readiness off, shutdown.delay of continued service, then the listener
// closes and in-flight work gets shutdown.timeout.
func serve(ctx context.Context, cfg *config.Config, log *zap.Logger, stderr io.Writer) int {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	rdb, err := redisstore.NewClient(&cfg.Redis)
	if err != nil {
		fmt.Fprintf(stderr, "sessiongate: %v\n", err)
		return exitConfig
	}
	defer rdb.Close()
	store := redisstore.New(rdb, cfg.Redis.KeyPrefix)
	defer store.Close()

	// With mirror.max_lag set, the route is forwarded while the mirror's
	// heartbeat is older than that: stale data is worse than a slower answer.
	var lag *mirror.LagWatcher
	var fresh func() bool
	if cfg.Mirror.MaxLag > 0 {
		read := func(ctx context.Context) (time.Time, error) {
			return redisstore.MirrorHeartbeat(ctx, rdb, cfg.Redis.KeyPrefix)
		}
		if lag, err = mirror.NewLagWatcher(read, cfg.Mirror.MaxLag, time.Second, log, reg); err != nil {
			fmt.Fprintf(stderr, "sessiongate: %v\n", err)
			return exitConfig
		}
		fresh = lag.Fresh
	}

	// The route tells the mirror which tokens it looked up, batched off the
	// request's path, so a poll-mode mirror re-checks those against
	// MongoDB (mirror.active_window).
	activity := redisstore.NewActivityReporter(rdb, cfg.Redis.KeyPrefix, 0, 0, log)
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Namespace: "sessiongate", Name: "activity_reports_dropped_total",
		Help: "Token lookups not reported to the mirror: queue full, or over the 401s reported per flush.",
	}, func() float64 { return float64(activity.Dropped()) }))

	// A poll-mode mirror marks the token keys it does not re-check every
	// poll; the route asks it about those before serving them, over
	// connections of their own since each waits up to route.verify_timeout.
	vrdb, err := redisstore.NewVerifyClient(&cfg.Redis, cfg.Route.VerifyTimeout)
	if err != nil {
		fmt.Fprintf(stderr, "sessiongate: %v\n", err)
		return exitConfig
	}
	defer vrdb.Close()

	var routes []proxy.Route
	var sh *shadow.Shadow // with sessions.shadow.rate, compares the route with the upstream
	var versions *sessions.VersionWatcher
	if cfg.Route.Enabled {
		h, err := sessions.New(sessions.Options{
			Activity:         activity.Report,
			Store:            store,
			Verifier:         redisstore.NewVerifier(vrdb, cfg.Redis.KeyPrefix),
			VerifyTimeout:    cfg.Route.VerifyTimeout,
			OnError:          cfg.Redis.OnError,
			UnauthorizedBody: cfg.Route.UnauthorizedBody,
			Version:          cfg.RocketChat.FallbackVersion,
			Timeout:          cfg.Redis.Timeout,
			Fresh:            fresh,
			Log:              log,
			Registerer:       reg,
		})
		if err != nil {
			fmt.Fprintf(stderr, "sessiongate: %v\n", err)
			return exitConfig
		}
		// The upstream's version picks the route's era (docs/eras.md).
		versions, err = sessions.NewVersionWatcher(h, sessions.VersionOptions{
			Version:    cfg.RocketChat.Version,
			Fallback:   cfg.RocketChat.FallbackVersion,
			Upstream:   cfg.Upstream.URL,
			Every:      cfg.RocketChat.RefreshInterval,
			Client:     upstreamInfoClient(cfg),
			Log:        log,
			Registerer: reg,
		})
		if err != nil {
			fmt.Fprintf(stderr, "sessiongate: %v\n", err)
			return exitConfig
		}
		serveRoute := h.Serve
		if sh, err = shadow.FromConfig(cfg, log, reg); err != nil {
			fmt.Fprintf(stderr, "sessiongate: %v\n", err)
			return exitConfig
		} else if sh != nil {
			serveRoute = sh.Wrap(h.Serve)
		}
		routes = append(routes, proxy.Route{Method: "GET", Path: "/api/v1/sessions/info", Class: "sessions_info", Serve: serveRoute})
	}

	popts, err := proxyOptions(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "sessiongate: %v\n", err)
		return exitConfig
	}
	popts.Log, popts.Registerer, popts.Routes = log, reg, routes
	p, err := proxy.New(popts)
	if err != nil {
		fmt.Fprintf(stderr, "sessiongate: %v\n", err)
		return exitConfig
	}

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "sessiongate: listen: %q: %v\n", cfg.Listen, err)
		return exitConfig
	}
	var adm *admin.Server
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			ln.Close()
			fmt.Fprintf(stderr, "sessiongate: admin.listen: %q: %v\n", cfg.Admin.Listen, err)
			return exitConfig
		}
		// Ready while serving: the Redis check is reported in /readyz's
		// body but does not fail it (everything but one route works
		// without Redis).
		adm = admin.New(admin.Options{
			Gatherer: reg,
			Pprof:    cfg.Admin.Pprof,
			Checks:   map[string]func(context.Context) error{"redis": store.Ping},
		})
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return p.Serve(ln) })
	if lag != nil {
		g.Go(func() error { lag.Run(gctx); return nil })
	}
	if versions != nil {
		g.Go(func() error { versions.Run(gctx); return nil })
	}
	// sessiongate_ready mirrors /readyz for alerting: Prometheus scrapes
	// /metrics, not /readyz.
	ready := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "sessiongate", Name: "ready",
		Help: "1 while /readyz answers 200; 0 once shutdown began.",
	})
	reg.MustRegister(ready)
	if cfg.Route.Enabled {
		g.Go(func() error { activity.Run(gctx); return nil })
	}
	if adm != nil {
		g.Go(func() error { return adm.Serve(adminLn) })
		ready.Set(1)
	}
	log.Info("serving",
		zap.String("version", versionString()),
		zap.String("listen", ln.Addr().String()),
		zap.String("admin", addrOf(adminLn)),
		zap.String("upstream", cfg.Upstream.URL),
	)

	g.Go(func() error {
		<-gctx.Done()
		if adm != nil {
			adm.SetReady(false)
		}
		ready.Set(0)
		if ctx.Err() != nil { // a signal, not a failed server: drain politely
			log.Info("shutting down", zap.Duration("delay", cfg.Shutdown.Delay), zap.Duration("timeout", cfg.Shutdown.Timeout))
			time.Sleep(cfg.Shutdown.Delay)
		}
		sctx, cancel := context.WithTimeout(context.Background(), cfg.Shutdown.Timeout)
		defer cancel()
		err := p.Shutdown(sctx)
		if sh != nil {
			// Comparisons use the Store, closed when serve returns.
			if serr := sh.Close(sctx); err == nil {
				err = serr
			}
		}
		if adm != nil {
			adm.Shutdown(sctx)
		}
		if err != nil {
			log.Warn("shutdown deadline passed", zap.Error(err))
		}
		return nil
	})

	if err := g.Wait(); err != nil {
		log.Error("server failed", zap.Error(err))
		return exitFailed
	}
	log.Info("stopped")
	return exitOK
}

// proxyOptions maps the upstream.*, proxy.* and log.access keys onto the
// proxy's options.
func proxyOptions(cfg *config.Config) (proxy.Options, error) {
	var trusted []netip.Prefix
	for _, s := range cfg.Proxy.TrustedProxies {
		pfx, err := config.ParsePrefix(s)
		if err != nil {
			return proxy.Options{}, fmt.Errorf("proxy.trusted_proxies: %q: %w", s, err)
		}
		trusted = append(trusted, pfx)
	}
	return proxy.Options{
		Upstream: proxy.Upstream{
			URL:                   cfg.Upstream.URL,
			TLSInsecureSkipVerify: cfg.Upstream.TLSInsecureSkipVerify,
			DialTimeout:           cfg.Upstream.DialTimeout,
			ResponseHeaderTimeout: cfg.Upstream.ResponseHeaderTimeout,
			IdleConnTimeout:       cfg.Upstream.IdleConnTimeout,
			MaxConns:              cfg.Upstream.MaxConns,
		},
		TrustedProxies:    trusted,
		ReadHeaderTimeout: cfg.Proxy.ReadHeaderTimeout,
		IdleTimeout:       cfg.Proxy.IdleTimeout,
		WriteTimeout:      cfg.Proxy.WriteTimeout,
		MaxHeaderBytes:    cfg.Proxy.MaxHeaderBytes,
		MaxConns:          cfg.Proxy.MaxConns,
		EventLoop:         cfg.Proxy.EventLoop,
		EventLoops:        cfg.Proxy.EventLoops,
		AccessLog:         cfg.Log.Access,
	}, nil
}

// upstreamInfoClient asks the upstream its version: a plain client with the
// upstream's TLS setting and a short timeout.
func upstreamInfoClient(cfg *config.Config) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	if cfg.Upstream.TLSInsecureSkipVerify {
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // the operator's explicit setting
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: t}
}

// printEra ends check-config's output with YAML comments naming the
// Rocket.Chat version the route would follow and its era; with
// rocketchat.version auto it asks the upstream.
func printEra(w io.Writer, cfg *config.Config) {
	version, source := cfg.RocketChat.Version, "configured"
	if version == config.VersionAuto {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		v, err := sessions.UpstreamVersion(ctx, upstreamInfoClient(cfg), cfg.Upstream.URL)
		switch {
		case err != nil:
			fmt.Fprintf(w, "# rocketchat: the upstream could not be asked its version: %v\n", err)
			version, source = cfg.RocketChat.FallbackVersion, "fallback"
		case v == "":
			fmt.Fprintln(w, "# rocketchat: the upstream does not report its version")
			version, source = cfg.RocketChat.FallbackVersion, "fallback"
		default:
			version, source = v, "upstream"
		}
	}
	era, err := sessions.EraOf(version)
	if err != nil {
		fmt.Fprintf(w, "# rocketchat: version %s (%s): %v\n", version, source, err)
		return
	}
	fmt.Fprintf(w, "# rocketchat: version %s (%s), era %s\n", version, source, era)
}

func addrOf(ln net.Listener) string {
	if ln == nil {
		return ""
	}
	return ln.Addr().String()
}

// newLogger builds the process logger from cfg: JSON or console on w.
func newLogger(cfg *config.Log, w io.Writer) (*zap.Logger, error) {
	level, err := zapcore.ParseLevel(cfg.Level)
	if err != nil {
		return nil, fmt.Errorf("log.level: %q: %w", cfg.Level, err)
	}
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = zapcore.ISO8601TimeEncoder
	encCfg.EncodeDuration = zapcore.StringDurationEncoder
	var enc zapcore.Encoder
	if cfg.Format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	core := zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level)
	return zap.New(core), nil
}

// runMirror runs `sessiongate mirror` and its admin listener (admin.listen:
// /healthz, /readyz once the initial sync is done and the mirror follows
// MongoDB, /metrics) until ctx ends.
func runMirror(ctx context.Context, cfg *config.Config, log *zap.Logger, stderr io.Writer) int {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	mr, err := mirror.New(cfg, log, reg)
	if err != nil {
		fmt.Fprintf(stderr, "sessiongate: %v\n", err)
		return exitConfig
	}
	var adm *admin.Server
	var adminLn net.Listener
	if cfg.Admin.Listen != "" {
		if adminLn, err = net.Listen("tcp", cfg.Admin.Listen); err != nil {
			fmt.Fprintf(stderr, "sessiongate: admin.listen: %q: %v\n", cfg.Admin.Listen, err)
			return exitConfig
		}
		adm = admin.New(admin.Options{Gatherer: reg, Pprof: cfg.Admin.Pprof, Ready: mr.Readiness})
		go func() {
			if err := adm.Serve(adminLn); err != nil {
				log.Error("admin listener failed", zap.Error(err))
			}
		}()
	}
	log.Info("mirror starting", zap.String("version", version), zap.String("admin", addrOf(adminLn)),
		zap.String("follow", cfg.Mirror.Follow), zap.String("mongo_url", config.RedactURL(cfg.Mirror.MongoURL)))
	err = mr.Run(ctx)
	if adm != nil {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = adm.Shutdown(sctx)
	}
	if err != nil {
		log.Error("mirror failed", zap.Error(err))
		return exitFailed
	}
	return exitOK
}
