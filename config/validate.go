package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Validate reports every invalid value at once (errors.Join), each error
// naming the key and the value. It does no I/O: whether a listen address can
// be bound is found out when binding.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key string, value any, why string) {
		errs = append(errs, fmt.Errorf("%s: %q: %s", key, fmt.Sprint(value), why))
	}

	checkAddr := func(key, addr string, allowEmpty bool) {
		if addr == "" {
			if !allowEmpty {
				bad(key, addr, "must be host:port")
			}
			return
		}
		if _, port, err := net.SplitHostPort(addr); err != nil || port == "" {
			bad(key, addr, "must be host:port")
		}
	}
	checkAddr("listen", c.Listen, false)
	checkAddr("admin.listen", c.Admin.Listen, true)

	if u, err := url.Parse(c.Upstream.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("upstream.url", RedactURL(c.Upstream.URL), "must be an http:// or https:// URL with a host")
	} else if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		bad("upstream.url", RedactURL(c.Upstream.URL), "must have no path, query or credentials")
	}

	positive := func(key string, d time.Duration) {
		if d <= 0 {
			bad(key, d, "must be positive")
		}
	}
	notNegative := func(key string, d time.Duration) {
		if d < 0 {
			bad(key, d, "must not be negative")
		}
	}
	positive("upstream.dial_timeout", c.Upstream.DialTimeout)
	positive("upstream.response_header_timeout", c.Upstream.ResponseHeaderTimeout)
	positive("upstream.idle_conn_timeout", c.Upstream.IdleConnTimeout)
	if c.Upstream.MaxConns <= 0 {
		bad("upstream.max_conns", c.Upstream.MaxConns, "must be positive")
	}

	for _, p := range c.Proxy.TrustedProxies {
		if _, err := ParsePrefix(p); err != nil {
			bad("proxy.trusted_proxies", p, "must be a CIDR or an IP address")
		}
	}
	positive("proxy.read_header_timeout", c.Proxy.ReadHeaderTimeout)
	positive("proxy.idle_timeout", c.Proxy.IdleTimeout)
	notNegative("proxy.write_timeout", c.Proxy.WriteTimeout)
	if c.Proxy.MaxHeaderBytes < 1024 {
		bad("proxy.max_header_bytes", c.Proxy.MaxHeaderBytes, "must be at least 1024")
	}
	if c.Proxy.MaxConns < 0 {
		bad("proxy.max_conns", c.Proxy.MaxConns, "must not be negative")
	}
	if c.Proxy.EventLoops < 0 || c.Proxy.EventLoops > 1024 {
		bad("proxy.event_loops", c.Proxy.EventLoops, "must be between 0 and 1024")
	}

	switch {
	case len(c.Redis.Cluster.Addrs) > 0:
		for _, a := range c.Redis.Cluster.Addrs {
			checkAddr("redis.cluster.addrs", a, false)
		}
	case len(c.Redis.Sentinel.Addrs) > 0:
		for _, a := range c.Redis.Sentinel.Addrs {
			checkAddr("redis.sentinel.addrs", a, false)
		}
		if c.Redis.Sentinel.Master == "" {
			bad("redis.sentinel.master", "", "must be set with redis.sentinel.addrs")
		}
	default:
		if u, err := url.Parse(c.Redis.URL); err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
			// The URL may hold a password: name the key, not the value.
			errs = append(errs, errors.New("redis.url: must be a redis:// or rediss:// URL with a host"))
		}
	}
	if c.Redis.KeyPrefix == "" || strings.ContainsAny(c.Redis.KeyPrefix, "{}") {
		bad("redis.key_prefix", c.Redis.KeyPrefix, "must be non-empty and contain no '{' or '}'")
	}
	if c.Redis.OnError != OnErrorForward && c.Redis.OnError != OnErrorUnavailable {
		bad("redis.on_error", c.Redis.OnError, "must be forward or unavailable")
	}
	positive("redis.timeout", c.Redis.Timeout)
	positive("route.verify_timeout", c.Route.VerifyTimeout)
	positive("redis.dial_timeout", c.Redis.DialTimeout)
	if c.Redis.PoolSize < 0 {
		bad("redis.pool_size", c.Redis.PoolSize, "must not be negative")
	}

	switch c.Route.UnauthorizedBody {
	case UnauthorizedAuto, UnauthorizedClassic, UnauthorizedExtended:
	default:
		bad("route.unauthorized_body", c.Route.UnauthorizedBody, "must be auto, classic or extended")
	}

	if c.RocketChat.Version != VersionAuto && !IsVersion(c.RocketChat.Version) {
		bad("rocketchat.version", c.RocketChat.Version, "must be auto or a version like 6.12.0")
	}
	if !IsVersion(c.RocketChat.FallbackVersion) {
		bad("rocketchat.fallback_version", c.RocketChat.FallbackVersion, "must be a version like 7.3.0")
	}
	positive("rocketchat.refresh_interval", c.RocketChat.RefreshInterval)

	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", c.Log.Level, "must be debug, info, warn or error")
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format", c.Log.Format, "must be json or console")
	}

	notNegative("shutdown.delay", c.Shutdown.Delay)
	positive("shutdown.timeout", c.Shutdown.Timeout)

	switch c.Mirror.Follow {
	case "auto", "change_stream", "poll":
	default:
		bad("mirror.follow", c.Mirror.Follow, "must be auto, change_stream or poll")
	}
	if u := c.Mirror.MongoURL; u != "" && !strings.HasPrefix(u, "mongodb://") && !strings.HasPrefix(u, "mongodb+srv://") {
		bad("mirror.mongo_url", RedactURL(u), "must be a mongodb:// or mongodb+srv:// URL")
	}
	positive("mirror.poll_interval", c.Mirror.PollInterval)
	notNegative("mirror.overlap", c.Mirror.Overlap)
	positive("mirror.reconcile_interval", c.Mirror.ReconcileInterval)
	if c.Mirror.BatchSize <= 0 {
		bad("mirror.batch_size", c.Mirror.BatchSize, "must be positive")
	}
	positive("mirror.active_window", c.Mirror.ActiveWindow)
	notNegative("mirror.max_lag", c.Mirror.MaxLag)
	if c.Mirror.Database == "" {
		bad("mirror.database", "", "must be set")
	}

	if r := c.Sessions.Shadow.Rate; !(r >= 0 && r <= 1) { // NaN fails both
		bad("sessions.shadow.rate", r, "must be a number from 0 to 1")
	}
	if m := c.Sessions.Shadow.Mode; m != ShadowCompare && m != ShadowOrigin {
		bad("sessions.shadow.mode", m, "must be compare or origin")
	}
	if c.Sessions.Shadow.MaxInflight <= 0 {
		bad("sessions.shadow.max_inflight", c.Sessions.Shadow.MaxInflight, "must be positive")
	}
	positive("sessions.shadow.timeout", c.Sessions.Shadow.Timeout)

	return errors.Join(errs...)
}

// Values of redis.on_error, route.unauthorized_body, sessions.shadow.mode
// and rocketchat.version.
const (
	OnErrorForward       = "forward"
	OnErrorUnavailable   = "unavailable"
	UnauthorizedAuto     = "auto"
	UnauthorizedClassic  = "classic"
	UnauthorizedExtended = "extended"
	ShadowCompare        = "compare"
	ShadowOrigin         = "origin"
	VersionAuto          = "auto"
)

// versionPattern is a Rocket.Chat version as /api/info reports it: major
// and minor, optionally a patch and a pre-release or build suffix.
var versionPattern = regexp.MustCompile(`^v?[0-9]{1,4}\.[0-9]{1,4}(\.[0-9]{1,6})?([-+][0-9A-Za-z.-]{0,40})?$`)

// IsVersion reports whether s is a Rocket.Chat version such as "6.12.0" or
// "7.6.0-rc.1".
func IsVersion(s string) bool { return versionPattern.MatchString(s) }

// ParsePrefix parses a trusted-proxy entry: a CIDR, or a single address
// meaning a /32 (or /128).
func ParsePrefix(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
