package config

import (
	"strings"
	"testing"
)

// TestValidateNamesKeyAndValue sets one bad value at a time through the
// environment; the error must be one line naming the key and the value.
func TestValidateNamesKeyAndValue(t *testing.T) {
	tests := []struct {
		key   string
		value string
		env   []string // extra settings the case needs
	}{
		{"listen", "8080", nil},
		{"listen", "", nil},
		{"admin.listen", "localhost", nil},
		{"upstream.url", "ftp://127.0.0.1:3000", nil},
		{"upstream.url", "127.0.0.1:3000", nil},
		{"upstream.url", "http://127.0.0.1:3000/chat", nil},
		{"upstream.url", "http://127.0.0.1:3000?x=1", nil},
		{"upstream.dial_timeout", "0s", nil},
		{"upstream.dial_timeout", "-1s", nil},
		{"upstream.response_header_timeout", "0s", nil},
		{"upstream.idle_conn_timeout", "-5s", nil},
		{"upstream.max_conns", "0", nil},
		{"proxy.trusted_proxies", "10.0.0.0/33", nil},
		{"proxy.trusted_proxies", "gateway.local", nil},
		{"proxy.read_header_timeout", "0s", nil},
		{"proxy.idle_timeout", "0s", nil},
		{"proxy.write_timeout", "-1s", nil},
		{"proxy.max_header_bytes", "512", nil},
		{"proxy.max_conns", "-1", nil},
		{"redis.key_prefix", "rc{x}:", nil},
		{"redis.key_prefix", "", nil},
		{"redis.on_error", "ignore", nil},
		{"redis.timeout", "0s", nil},
		{"redis.dial_timeout", "-2s", nil},
		{"redis.pool_size", "-1", nil},
		{"redis.sentinel.addrs", "sentinel-without-port", nil},
		{"redis.sentinel.master", "", []string{"SESSIONGATE_REDIS_SENTINEL_ADDRS=s1:26379"}},
		{"redis.cluster.addrs", "node-without-port", nil},
		{"route.unauthorized_body", "verbose", nil},
		{"rocketchat.version", "latest", nil},
		{"rocketchat.version", "7", nil},
		{"rocketchat.fallback_version", "auto", nil},
		{"rocketchat.refresh_interval", "0s", nil},
		{"log.level", "trace", nil},
		{"log.format", "xml", nil},
		{"shutdown.delay", "-1s", nil},
		{"shutdown.timeout", "0s", nil},
		{"mirror.poll_interval", "0s", nil},
		{"mirror.overlap", "-1s", nil},
		{"mirror.reconcile_interval", "0s", nil},
		{"mirror.batch_size", "0", nil},
		{"mirror.max_lag", "-1s", nil},
		{"mirror.active_window", "0s", nil},
		{"mirror.follow", "oplog", nil},
		{"mirror.mongo_url", "postgres://db:5432/rocketchat", nil},
		{"mirror.mongo_url", "mongo:27017", nil},
		{"mirror.database", "", nil},
		{"sessions.shadow.rate", "1.5", nil},
		{"sessions.shadow.rate", "-0.1", nil},
		{"sessions.shadow.rate", "NaN", nil},
		{"sessions.shadow.mode", "mirror", nil},
		{"sessions.shadow.max_inflight", "0", nil},
		{"sessions.shadow.timeout", "0s", nil},
	}
	for _, tt := range tests {
		t.Run(tt.key+"="+tt.value, func(t *testing.T) {
			k, ok := LookupKey(tt.key)
			if !ok {
				t.Fatalf("no key %s", tt.key)
			}
			_, err := Load(nil, append([]string{k.EnvName() + "=" + tt.value}, tt.env...))
			if err == nil {
				t.Fatalf("%s=%q: got no error", tt.key, tt.value)
			}
			msg := err.Error()
			if strings.Contains(msg, "\n") {
				t.Errorf("got a multi-line error for one bad value: %q", msg)
			}
			if want := tt.key + `: "` + tt.value + `"`; !strings.Contains(msg, want) {
				t.Errorf("got %q, want it to contain %q", msg, want)
			}
		})
	}
}

// TestValidateRedisURLHidesTheValue: redis.url may carry a password, so its
// error names the key only.
func TestValidateRedisURLHidesTheValue(t *testing.T) {
	for _, u := range []string{"http://:hunter2@redis:6379", "redis//:hunter2@redis"} {
		_, err := Load(nil, []string{"SESSIONGATE_REDIS_URL=" + u})
		if err == nil {
			t.Fatalf("redis.url %q: got no error", u)
		}
		if !strings.Contains(err.Error(), "redis.url") {
			t.Errorf("error %q does not name redis.url", err)
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error %q shows the password", err)
		}
	}
}

func TestValidateReportsAllProblemsAtOnce(t *testing.T) {
	_, err := Load([]string{"--config", "testdata/bad_values.yaml", "--redis.on_error=drop"},
		[]string{"SESSIONGATE_SHUTDOWN_TIMEOUT=0s"})
	if err == nil {
		t.Fatal("got no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := []string{
		`upstream.url: "ftp://127.0.0.1"`,
		`upstream.dial_timeout: "-1s"`,
		`redis.on_error: "drop"`,
		`log.format: "xml"`,
		`shutdown.timeout: "0s"`,
	}
	if len(lines) != len(want) {
		t.Errorf("got %d errors, want %d:\n%s", len(lines), len(want), err)
	}
	for _, w := range want {
		found := false
		for _, l := range lines {
			found = found || strings.HasPrefix(l, w)
		}
		if !found {
			t.Errorf("no error line starts with %q in:\n%s", w, err)
		}
	}
}

func TestValidateAcceptsDefaultsAndTopologies(t *testing.T) {
	tests := []struct {
		name string
		env  []string
	}{
		{"defaults", nil},
		{"admin disabled", []string{"SESSIONGATE_ADMIN_LISTEN="}},
		{"ipv6 listen", []string{"SESSIONGATE_LISTEN=[::1]:8080"}},
		{"rediss with credentials", []string{"SESSIONGATE_REDIS_URL=rediss://gate:pw@redis.example:6380/1"}},
		{"sentinel ignores a bad url", []string{"SESSIONGATE_REDIS_SENTINEL_ADDRS=s1:26379,s2:26379", "SESSIONGATE_REDIS_URL=unused"}},
		{"cluster", []string{"SESSIONGATE_REDIS_CLUSTER_ADDRS=c1:6379"}},
		{"trusted single addresses", []string{"SESSIONGATE_PROXY_TRUSTED_PROXIES=10.0.0.1,::1,172.16.0.0/12"}},
		{"no shutdown delay", []string{"SESSIONGATE_SHUTDOWN_DELAY=0s"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Load(nil, tt.env); err != nil {
				t.Errorf("got %v, want no error", err)
			}
		})
	}
}
