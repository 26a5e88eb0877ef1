package redisstore

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/config"
)

// NewClient returns a go-redis client for the configured topology: Cluster
// when cluster.addrs is set, else Sentinel when sentinel.addrs is set, else
// the standalone URL. It does not connect; the first command does.
//
// The client is built with go-redis's own retries off: the route spends at
// most one round trip per request, and a retry after a timeout would blow
// its deadline (docs/route.md).
func NewClient(cfg *config.Redis) (redis.UniversalClient, error) {
	opts := &redis.UniversalOptions{
		DialTimeout:           cfg.DialTimeout,
		ReadTimeout:           cfg.Timeout,
		WriteTimeout:          cfg.Timeout,
		PoolSize:              cfg.PoolSize,
		MaxRetries:            -1,
		ContextTimeoutEnabled: true,
		// The CLIENT SETINFO handshake costs a round trip per new connection
		// and fails on older or proxied servers; nothing needs it.
		DisableIdentity: true,
		Protocol:        2,
	}

	var tlsConfig *tls.Config
	switch {
	case len(cfg.Cluster.Addrs) > 0:
		opts.Addrs = cfg.Cluster.Addrs
		opts.IsClusterMode = true
	case len(cfg.Sentinel.Addrs) > 0:
		opts.Addrs = cfg.Sentinel.Addrs
		opts.MasterName = cfg.Sentinel.Master
		opts.SentinelPassword = cfg.Sentinel.Password
	default:
		u, err := redis.ParseURL(cfg.URL)
		if err != nil {
			// The URL may carry a password: do not echo it.
			return nil, fmt.Errorf("redis.url: cannot parse")
		}
		opts.Addrs = []string{u.Addr}
		opts.DB = u.DB
		opts.Username = u.Username
		opts.Password = u.Password
		tlsConfig = u.TLSConfig
	}
	if cfg.Username != "" {
		opts.Username = cfg.Username
	}
	if cfg.Password != "" {
		opts.Password = cfg.Password
	}
	if cfg.TLSCAFile != "" {
		pem, err := os.ReadFile(cfg.TLSCAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls_ca_file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("redis.tls_ca_file: %q: no PEM certificates", cfg.TLSCAFile)
		}
		if tlsConfig == nil {
			tlsConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		tlsConfig.RootCAs = pool
	}
	opts.TLSConfig = tlsConfig
	return redis.NewUniversalClient(opts), nil
}
