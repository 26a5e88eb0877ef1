package config

import (
	"strings"
	"time"
)

// Key describes one configuration key: its dotted name (as in YAML and
// flags), its default and a one-line help text. Secret keys are redacted
// whenever the configuration is printed.
type Key struct {
	Name    string
	Default any
	Help    string
	Secret  bool
}

// EnvName is the environment variable that sets the key:
// "SESSIONGATE_" + the name upper-cased with '.' replaced by '_'.
func (k Key) EnvName() string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(k.Name, ".", "_"))
}

// EnvPrefix starts every environment variable sessiongate reads.
const EnvPrefix = "SESSIONGATE_"

// Keys lists every configuration key in documentation order. The
// reference table in docs/configuration.md, sessiongate.example.yaml and
// --help are checked against it by tests.
var Keys = []Key{
	{"listen", ":8080", "client-facing address (host:port)", false},

	{"upstream.url", "http://127.0.0.1:3000", "the Rocket.Chat server (http:// or https://)", false},
	{"upstream.dial_timeout", 5 * time.Second, "timeout to connect to the upstream", false},
	{"upstream.response_header_timeout", 90 * time.Second, "wait for the upstream's response headers before answering 504 (long-polls wait up to 60s)", false},
	{"upstream.idle_conn_timeout", 90 * time.Second, "close pooled upstream connections idle this long", false},
	{"upstream.max_conns", 1024, "maximum concurrent upstream connections (tunnels not counted)", false},
	{"upstream.tls_insecure_skip_verify", false, "skip certificate verification for an https upstream", false},

	{"proxy.trusted_proxies", []string{}, "CIDRs of peers whose X-Real-IP/X-Forwarded-* headers are kept", false},
	{"proxy.read_header_timeout", 10 * time.Second, "timeout to read a request's line and headers", false},
	{"proxy.idle_timeout", 120 * time.Second, "close idle client keep-alive connections after this", false},
	{"proxy.write_timeout", 60 * time.Second, "timeout of one write to a client (0: none)", false},
	{"proxy.max_header_bytes", 16384, "maximum size of request line plus headers (431 beyond)", false},
	{"proxy.max_conns", 0, "maximum concurrent client connections (0: no limit)", false},
	{"proxy.event_loop", true, "serve plain forwarded requests from epoll event loops (Linux; false: a goroutine per connection)", false},
	{"proxy.event_loops", 0, "number of event loops (0: one per GOMAXPROCS but one, at least one)", false},

	{"redis.url", "redis://127.0.0.1:6379/0", "standalone Redis URL (redis:// or rediss://, user:password@ allowed)", true},
	{"redis.username", "", "Redis username (overrides the URL's; used for Sentinel and Cluster too)", false},
	{"redis.password", "", "Redis password (overrides the URL's; used for Sentinel and Cluster too)", true},
	{"redis.key_prefix", "rc:", "prefix of every Redis key (no '{' or '}')", false},
	{"redis.on_error", "forward", "when Redis fails: forward (to the upstream) or unavailable (503)", false},
	{"redis.timeout", 250 * time.Millisecond, "deadline of the route's single Redis round trip", false},
	{"redis.dial_timeout", 2 * time.Second, "timeout to connect to Redis", false},
	{"redis.pool_size", 0, "Redis connections per node (0: 10 per CPU)", false},
	{"redis.tls_ca_file", "", "PEM CA bundle for rediss:// (empty: system roots)", false},
	{"redis.sentinel.addrs", []string{}, "Sentinel addresses (host:port); enables Sentinel", false},
	{"redis.sentinel.master", "mymaster", "Sentinel master name", false},
	{"redis.sentinel.password", "", "password of the sentinels themselves", true},
	{"redis.cluster.addrs", []string{}, "Cluster seed addresses (host:port); enables Cluster", false},

	{"route.enabled", true, "answer GET /api/v1/sessions/info from Redis (false: forward it)", false},
	{"route.unauthorized_body", "auto", "401 body: auto (the upstream's era), classic (documented) or extended (Rocket.Chat 7.4+)", false},
	{"route.verify_timeout", time.Second, "wait for the mirror's answer about a token it marked to verify (poll mode); none in time counts as a Redis failure (redis.on_error)", false},

	{"rocketchat.version", "auto", "the upstream's Rocket.Chat version, which picks the route's era: auto (asked from GET /api/info) or a version like 6.12.0", false},
	{"rocketchat.fallback_version", "7.3.0", "the version assumed while the upstream does not tell its own (auto)", false},
	{"rocketchat.refresh_interval", 5 * time.Minute, "how often auto asks the upstream its version again", false},

	{"admin.listen", ":9090", "probes and metrics address (empty: disabled)", false},
	{"admin.pprof", false, "serve /debug/pprof/ on the admin listener", false},

	{"log.level", "info", "debug, info, warn or error", false},
	{"log.format", "json", "json or console", false},
	{"log.access", false, "one log line per request", false},

	{"shutdown.delay", 5 * time.Second, "keep serving this long after /readyz turns 503", false},
	{"shutdown.timeout", 30 * time.Second, "then wait at most this long for in-flight requests and tunnels", false},

	{"mirror.mongo_url", "", "Rocket.Chat's MongoDB URL (sessiongate mirror)", true},
	{"mirror.database", "rocketchat", "Rocket.Chat's database name", false},
	{"mirror.follow", "auto", "how the mirror follows MongoDB: auto, change_stream or poll", false},
	{"mirror.poll_interval", time.Second, "how often the mirror polls for changes", false},
	{"mirror.overlap", 5 * time.Second, "window re-read before the checkpoint so no change is skipped", false},
	{"mirror.reconcile_interval", 10 * time.Minute, "how often keys of deleted documents are removed", false},
	{"mirror.active_window", 15 * time.Minute, "poll mode: tokens used this recently are re-checked against MongoDB every poll", false},
	{"mirror.batch_size", 1000, "writes per Redis pipeline", false},
	{"mirror.max_lag", time.Duration(0), "proxy forwards the route while the mirror is older than this (0: off)", false},

	{"sessions.shadow.rate", 0.0, "fraction of route requests also sent upstream and compared, 0 to 1 (0: off)", false},
	{"sessions.shadow.mode", "compare", "compare (clients get sessiongate's answer) or origin (clients get the upstream's)", false},
	{"sessions.shadow.max_inflight", 16, "comparisons at once; a sampled request beyond it is dropped and counted", false},
	{"sessions.shadow.timeout", 2 * time.Second, "deadline of one shadow request to the upstream", false},
}

// LookupKey returns the key named name.
func LookupKey(name string) (Key, bool) {
	for _, k := range Keys {
		if k.Name == name {
			return k, true
		}
	}
	return Key{}, false
}
