// Package config defines sessiongate's typed configuration and loads it from
// defaults, a YAML file, SESSIONGATE_* environment variables and flags, in
// that order of precedence. Loading is pure: it touches no network and no
// globals, so tests can call it freely.
package config

import "time"

// Config is the whole configuration of one sessiongate process. Every leaf
// has an entry in Keys (keys.go) with its default and help text; a test keeps
// the two in step.
type Config struct {
	// Listen is the client-facing address. Default ":8080".
	Listen string `mapstructure:"listen"`

	Upstream Upstream `mapstructure:"upstream"`
	Proxy    Proxy    `mapstructure:"proxy"`
	Redis    Redis    `mapstructure:"redis"`
	Route    Route    `mapstructure:"route"`
	Admin    Admin    `mapstructure:"admin"`
	Log      Log      `mapstructure:"log"`
	Shutdown Shutdown `mapstructure:"shutdown"`
	Mirror   Mirror   `mapstructure:"mirror"`
	Sessions Sessions `mapstructure:"sessions"`

	// RocketChat says which Rocket.Chat runs upstream (docs/eras.md).
	RocketChat RocketChat `mapstructure:"rocketchat"`
}

// Upstream configures the connection pool to the Rocket.Chat server.
type Upstream struct {
	// URL is the Rocket.Chat server, http:// or https://, no path.
	// Default "http://127.0.0.1:3000".
	URL string `mapstructure:"url"`
	// DialTimeout bounds establishing a TCP (and TLS) connection. Default 5s.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// headers once the request is sent; past it the client gets 504.
	// Rocket.Chat long-polls hold a request for up to 60 s. It also bounds
	// each wait for a byte of a streamed response body. Default 90s.
	ResponseHeaderTimeout time.Duration `mapstructure:"response_header_timeout"`
	// IdleConnTimeout closes pooled upstream connections idle this long.
	// Default 90s.
	IdleConnTimeout time.Duration `mapstructure:"idle_conn_timeout"`
	// MaxConns caps concurrent upstream connections (WebSocket tunnels not
	// included); requests beyond it wait up to ResponseHeaderTimeout.
	// Default 1024.
	MaxConns int `mapstructure:"max_conns"`
	// TLSInsecureSkipVerify disables certificate checks for an https
	// upstream. Default false.
	TLSInsecureSkipVerify bool `mapstructure:"tls_insecure_skip_verify"`
}

// Proxy configures the client-facing server.
type Proxy struct {
	// TrustedProxies lists CIDRs (or single addresses) of peers whose
	// X-Real-IP / X-Forwarded-* headers are kept. Default [] (trust nobody).
	TrustedProxies []string `mapstructure:"trusted_proxies"`
	// ReadHeaderTimeout bounds reading a request's line and headers
	// (slowloris). Default 10s.
	ReadHeaderTimeout time.Duration `mapstructure:"read_header_timeout"`
	// IdleTimeout closes idle client keep-alive connections; it also bounds
	// each wait for a byte of a streamed request body. Default 120s.
	IdleTimeout time.Duration `mapstructure:"idle_timeout"`
	// WriteTimeout bounds one write to a client that does not read its
	// response; 0 means none. Default 60s.
	WriteTimeout time.Duration `mapstructure:"write_timeout"`
	// MaxHeaderBytes bounds the request line plus headers; larger requests
	// get 431 (fasthttp cannot tell a long request line from long headers,
	// so there is no separate 414). Default 16384.
	MaxHeaderBytes int `mapstructure:"max_header_bytes"`
	// MaxConns caps concurrent client connections; 0 means no cap.
	// Default 0.
	MaxConns int `mapstructure:"max_conns"`
	// EventLoop serves plain forwarded requests from one epoll loop per
	// core instead of a goroutine per connection (Linux, plain TCP, http://
	// upstream); other requests are served as without it. Default true.
	EventLoop bool `mapstructure:"event_loop"`
	// EventLoops is how many loops run, each one goroutine with its own
	// epoll set (not locked to an OS thread: the Go scheduler places them
	// like any goroutine); 0 means one per GOMAXPROCS but one, at least
	// one. Default 0.
	EventLoops int `mapstructure:"event_loops"`
}

// Redis configures the token and session cache. Exactly one topology is
// used: Cluster when Cluster.Addrs is set, else Sentinel when Sentinel.Addrs
// is set, else the standalone URL.
type Redis struct {
	// URL of a standalone server, redis:// or rediss:// (TLS), with
	// optional user:password and /db. Default "redis://127.0.0.1:6379/0".
	URL string `mapstructure:"url"`
	// Username overrides the URL's user (for Sentinel and Cluster too).
	// Default "".
	Username string `mapstructure:"username"`
	// Password overrides the URL's password (for Sentinel and Cluster too);
	// a secret, never printed. Default "".
	Password string `mapstructure:"password"`
	// KeyPrefix starts every key of the data contract; no '{' or '}'.
	// Default "rc:".
	KeyPrefix string `mapstructure:"key_prefix"`
	// OnError is what the route does when Redis fails: "forward" the
	// request upstream or answer 503 ("unavailable"). Default "forward".
	OnError string `mapstructure:"on_error"`
	// Timeout bounds the route's one Redis round trip. Default 250ms.
	Timeout time.Duration `mapstructure:"timeout"`
	// DialTimeout bounds connecting to Redis. Default 2s.
	DialTimeout time.Duration `mapstructure:"dial_timeout"`
	// PoolSize is the connection pool size per node; 0 means go-redis's
	// default (10 per CPU). Default 0.
	PoolSize int `mapstructure:"pool_size"`
	// TLSCAFile is a PEM bundle to verify the Redis server's certificate
	// (rediss://); empty uses the system roots. Default "".
	TLSCAFile string `mapstructure:"tls_ca_file"`

	Sentinel Sentinel `mapstructure:"sentinel"`
	Cluster  Cluster  `mapstructure:"cluster"`
}

// Sentinel selects a Redis master through Sentinel.
type Sentinel struct {
	// Addrs lists sentinel host:port addresses. Default [].
	Addrs []string `mapstructure:"addrs"`
	// Master is the monitored master's name. Default "mymaster".
	Master string `mapstructure:"master"`
	// Password authenticates to the sentinels themselves. Default "".
	Password string `mapstructure:"password"`
}

// Cluster selects Redis Cluster.
type Cluster struct {
	// Addrs lists seed nodes host:port. Default [].
	Addrs []string `mapstructure:"addrs"`
}

// Route configures the intercepted GET /api/v1/sessions/info.
type Route struct {
	// UnauthorizedBody picks the 401 body: "auto" (the upstream's era's),
	// "classic" (the documented {"status":"error","message":...}) or
	// "extended" (Rocket.Chat 7.4+, which adds "success" and "error").
	// Default "auto".
	UnauthorizedBody string `mapstructure:"unauthorized_body"`
	// Enabled turns interception on; off, the route is forwarded like any
	// other. Default true.
	Enabled bool `mapstructure:"enabled"`
	// VerifyTimeout bounds the wait for the mirror's answer about a token
	// key marked "verify before serving" (docs/data-contract.md); no answer
	// in time is a Redis failure (redis.on_error). Default 1s.
	VerifyTimeout time.Duration `mapstructure:"verify_timeout"`
}

// RocketChat names the upstream's Rocket.Chat version, whose era decides
// what differs between versions on the route (docs/eras.md).
type RocketChat struct {
	// Version is "auto" (ask the upstream's GET /api/info at start and
	// every RefreshInterval) or a version such as "6.12.0". Default "auto".
	Version string `mapstructure:"version"`
	// FallbackVersion is assumed while an "auto" upstream does not report
	// its version (or cannot be asked). Default "7.3.0".
	FallbackVersion string `mapstructure:"fallback_version"`
	// RefreshInterval is how often "auto" asks again. Default 5m.
	RefreshInterval time.Duration `mapstructure:"refresh_interval"`
}

// Admin configures the probes and metrics listener.
type Admin struct {
	// Listen is the admin address; empty disables it. Default ":9090".
	Listen string `mapstructure:"listen"`
	// Pprof serves net/http/pprof under /debug/pprof/ on the admin
	// listener, for profiling under load. Default false.
	Pprof bool `mapstructure:"pprof"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error. Default "info".
	Level string `mapstructure:"level"`
	// Format is "json" or "console". Default "json".
	Format string `mapstructure:"format"`
	// Access writes one line per request. Default false.
	Access bool `mapstructure:"access"`
}

// Shutdown configures draining on SIGTERM/SIGINT.
type Shutdown struct {
	// Delay keeps serving after /readyz turns 503, so load balancers stop
	// sending new traffic first. Default 5s.
	Delay time.Duration `mapstructure:"delay"`
	// Timeout bounds waiting for in-flight requests and tunnels after the
	// listener closes. Default 30s.
	Timeout time.Duration `mapstructure:"timeout"`
}

// Mirror configures `sessiongate mirror` (MongoDB → Redis) and the proxy's
// view of the mirror's freshness.
type Mirror struct {
	// MongoURL is Rocket.Chat's MongoDB (read-only access suffices).
	// Default "".
	MongoURL string `mapstructure:"mongo_url"`
	// Database is Rocket.Chat's database name. Default "rocketchat".
	Database string `mapstructure:"database"`
	// Follow is how changes are followed: "auto" (change streams when the
	// server offers them, else polling), "change_stream" or "poll".
	// Default "auto".
	Follow string `mapstructure:"follow"`
	// PollInterval is how often changes are polled. Default 1s.
	PollInterval time.Duration `mapstructure:"poll_interval"`
	// Overlap re-reads this window before the checkpoint so documents with
	// equal or late _updatedAt are never skipped. Default 5s.
	Overlap time.Duration `mapstructure:"overlap"`
	// ReconcileInterval is how often keys whose documents are gone are
	// removed. Default 10m.
	ReconcileInterval time.Duration `mapstructure:"reconcile_interval"`
	// BatchSize is the number of writes per Redis pipeline. Default 1000.
	BatchSize int `mapstructure:"batch_size"`
	// ActiveWindow is how long a token the proxy reported as used keeps
	// being re-checked against MongoDB every PollInterval in poll mode.
	// Default 15m.
	ActiveWindow time.Duration `mapstructure:"active_window"`
	// MaxLag, when positive, makes the proxy forward sessions/info upstream
	// while the mirror's heartbeat is older than this. Default 0 (off).
	MaxLag time.Duration `mapstructure:"max_lag"`
}

// Sessions configures how the sessions/info route is checked against the
// upstream's own answers.
type Sessions struct {
	Shadow Shadow `mapstructure:"shadow"`
}

// Shadow configures shadow mode: a sample of the route's requests is also
// sent to the upstream, off the client's path, and the two answers are
// compared (docs/shadow.md).
type Shadow struct {
	// Rate is the fraction of the route's requests compared, 0 to 1; 0
	// turns shadow mode off. Default 0.
	Rate float64 `mapstructure:"rate"`
	// Mode is "compare" (clients get sessiongate's answer, the upstream's
	// is fetched in the background) or "origin" (every request of the
	// route is forwarded and clients get the upstream's answer;
	// sessiongate's is worked out in the background). Default "compare".
	Mode string `mapstructure:"mode"`
	// MaxInflight caps comparisons running at once; a sampled request
	// beyond it is not compared (counted as dropped). Default 16.
	MaxInflight int `mapstructure:"max_inflight"`
	// Timeout bounds one shadow request to the upstream, connecting
	// included. Default 2s.
	Timeout time.Duration `mapstructure:"timeout"`
}
