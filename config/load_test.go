package config

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// everyKey gives each key a valid value other than its default, as text (the
// form environment variables and flags carry) and as the typed value Load
// must produce. TestEveryKeyHasAnOverride keeps it complete.
var everyKey = []struct {
	key  string
	text string
	want any
}{
	{"listen", "127.0.0.1:18080", "127.0.0.1:18080"},
	{"upstream.url", "https://chat.example:3443", "https://chat.example:3443"},
	{"upstream.dial_timeout", "7s", 7 * time.Second},
	{"upstream.response_header_timeout", "2m", 2 * time.Minute},
	{"upstream.idle_conn_timeout", "45s", 45 * time.Second},
	{"upstream.max_conns", "64", 64},
	{"upstream.tls_insecure_skip_verify", "true", true},
	{"proxy.trusted_proxies", "10.0.0.0/8,192.168.1.7", []string{"10.0.0.0/8", "192.168.1.7"}},
	{"proxy.read_header_timeout", "3s", 3 * time.Second},
	{"proxy.idle_timeout", "30s", 30 * time.Second},
	{"proxy.write_timeout", "0s", time.Duration(0)},
	{"proxy.max_header_bytes", "8192", 8192},
	{"proxy.max_conns", "5000", 5000},
	{"proxy.event_loop", "false", false},
	{"proxy.event_loops", "3", 3},
	{"redis.url", "rediss://redis.example:6380/2", "rediss://redis.example:6380/2"},
	{"redis.username", "gate", "gate"},
	{"redis.password", "s3cret", "s3cret"},
	{"redis.key_prefix", "chat:", "chat:"},
	{"redis.on_error", "unavailable", "unavailable"},
	{"redis.timeout", "100ms", 100 * time.Millisecond},
	{"redis.dial_timeout", "1s", time.Second},
	{"redis.pool_size", "20", 20},
	{"redis.tls_ca_file", "/etc/ssl/redis-ca.pem", "/etc/ssl/redis-ca.pem"},
	{"redis.sentinel.addrs", "s1:26379,s2:26379", []string{"s1:26379", "s2:26379"}},
	{"redis.sentinel.master", "chat", "chat"},
	{"redis.sentinel.password", "sentinel-secret", "sentinel-secret"},
	{"redis.cluster.addrs", "c1:6379,c2:6379", []string{"c1:6379", "c2:6379"}},
	{"route.enabled", "false", false},
	{"route.unauthorized_body", "extended", "extended"},
	{"route.verify_timeout", "3s", 3 * time.Second},
	{"rocketchat.version", "6.12.0", "6.12.0"},
	{"rocketchat.fallback_version", "7.6.0", "7.6.0"},
	{"rocketchat.refresh_interval", "1m", time.Minute},
	{"admin.listen", "127.0.0.1:19090", "127.0.0.1:19090"},
	{"admin.pprof", "true", true},
	{"log.level", "debug", "debug"},
	{"log.format", "console", "console"},
	{"log.access", "true", true},
	{"shutdown.delay", "10s", 10 * time.Second},
	{"shutdown.timeout", "1m", time.Minute},
	{"mirror.mongo_url", "mongodb://mongo:27017/?replicaSet=rs0", "mongodb://mongo:27017/?replicaSet=rs0"},
	{"mirror.database", "chat", "chat"},
	{"mirror.poll_interval", "2s", 2 * time.Second},
	{"mirror.overlap", "10s", 10 * time.Second},
	{"mirror.reconcile_interval", "1h", time.Hour},
	{"mirror.active_window", "1h", time.Hour},
	{"mirror.follow", "poll", "poll"},
	{"mirror.batch_size", "500", 500},
	{"mirror.max_lag", "30s", 30 * time.Second},
	{"sessions.shadow.rate", "0.25", 0.25},
	{"sessions.shadow.mode", "origin", "origin"},
	{"sessions.shadow.max_inflight", "4", 4},
	{"sessions.shadow.timeout", "500ms", 500 * time.Millisecond},
}

func TestEveryKeyHasAnOverride(t *testing.T) {
	covered := map[string]bool{}
	for _, o := range everyKey {
		covered[o.key] = true
		k, ok := LookupKey(o.key)
		if !ok {
			t.Errorf("everyKey lists %q, which is not in Keys", o.key)
			continue
		}
		if reflect.DeepEqual(k.Default, o.want) {
			t.Errorf("everyKey %s: %v is the default; pick another value", o.key, o.want)
		}
	}
	for _, k := range Keys {
		if !covered[k.Name] {
			t.Errorf("key %s has no entry in everyKey", k.Name)
		}
	}
}

// TestEnvironmentSetsEveryKey sets each key through its SESSIONGATE_*
// variable alone; the other keys must keep their defaults.
func TestEnvironmentSetsEveryKey(t *testing.T) {
	for _, o := range everyKey {
		t.Run(o.key, func(t *testing.T) {
			k, _ := LookupKey(o.key)
			want := EnvPrefix + strings.ToUpper(strings.ReplaceAll(o.key, ".", "_"))
			if k.EnvName() != want {
				t.Fatalf("EnvName: got %s, want %s", k.EnvName(), want)
			}
			c, err := Load(nil, []string{want + "=" + o.text})
			if err != nil {
				t.Fatalf("Load with %s=%s: %v", want, o.text, err)
			}
			assertOnly(t, c, o.key, o.want)
		})
	}
}

// TestFlagSetsEveryKey does the same with --key=value.
func TestFlagSetsEveryKey(t *testing.T) {
	for _, o := range everyKey {
		t.Run(o.key, func(t *testing.T) {
			c, err := Load([]string{"--" + o.key + "=" + o.text}, nil)
			if err != nil {
				t.Fatalf("Load --%s=%s: %v", o.key, o.text, err)
			}
			assertOnly(t, c, o.key, o.want)
		})
	}
}

// assertOnly checks that key has value want and every other key its default.
func assertOnly(t *testing.T, c *Config, key string, want any) {
	t.Helper()
	for _, k := range Keys {
		got, err := c.value(k.Name)
		if err != nil {
			t.Fatal(err)
		}
		w := k.Default
		if k.Name == key {
			w = want
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s: got %#v, want %#v", k.Name, got, w)
		}
	}
}

func TestLoadPrecedence(t *testing.T) {
	file := []string{"--config", "testdata/layered.yaml"}
	env := []string{
		"SESSIONGATE_UPSTREAM_URL=http://env.example:3000",
		"SESSIONGATE_LOG_LEVEL=error",
	}
	flags := []string{"--log.level=debug"}

	tests := []struct {
		name       string
		args, env  []string
		key        string
		want       any
		wantSource string
	}{
		{"default only", nil, nil, "upstream.url", "http://127.0.0.1:3000", "default"},
		{"file beats default", file, nil, "upstream.url", "http://file.example:3000", "file"},
		{"env beats file", file, env, "upstream.url", "http://env.example:3000", "env"},
		{"env beats default", nil, env, "upstream.url", "http://env.example:3000", "env"},
		{"flag beats env and file", append(file, flags...), env, "log.level", "debug", "flag"},
		{"flag beats default", flags, nil, "log.level", "debug", "flag"},
		{"env beats file (level)", file, env, "log.level", "error", "env"},
		{"file value kept when env sets other keys", file, env, "listen", "127.0.0.1:7001", "file"},
		{"file duration", file, env, "upstream.dial_timeout", 3 * time.Second, "file"},
		{"file keeps other keys at default", file, nil, "redis.on_error", "forward", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := c.value(tt.key)
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("%s: got %#v, want %#v (from %s)", tt.key, got, tt.want, tt.wantSource)
			}
		})
	}
}

func TestListsFromFileEnvAndFlags(t *testing.T) {
	want := []string{"10.0.0.0/8", "192.168.1.7"}
	tests := []struct {
		name      string
		args, env []string
	}{
		{"file sequence", []string{"--config", "testdata/lists.yaml"}, nil},
		{"env comma list", nil, []string{"SESSIONGATE_PROXY_TRUSTED_PROXIES=10.0.0.0/8,192.168.1.7"}},
		{"flag comma list", []string{"--proxy.trusted_proxies=10.0.0.0/8,192.168.1.7"}, nil},
		{"flag repeated", []string{"--proxy.trusted_proxies=10.0.0.0/8", "--proxy.trusted_proxies=192.168.1.7"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(tt.args, tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Proxy.TrustedProxies, want) {
				t.Errorf("proxy.trusted_proxies: got %q, want %q", c.Proxy.TrustedProxies, want)
			}
		})
	}

	// An empty variable means an empty list, not a list of one "".
	c, err := Load(nil, []string{"SESSIONGATE_PROXY_TRUSTED_PROXIES="})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Proxy.TrustedProxies) != 0 {
		t.Errorf("empty SESSIONGATE_PROXY_TRUSTED_PROXIES: got %q, want []", c.Proxy.TrustedProxies)
	}
}

// TestUnknownEnvironmentIgnored: Kubernetes injects service links
// ({SVC}_PORT, {SVC}_SERVICE_HOST, ...) for a Service named sessiongate;
// they must not stop start-up or change anything.
func TestUnknownEnvironmentIgnored(t *testing.T) {
	env := []string{
		"SESSIONGATE_PORT=tcp://10.96.0.12:80",
		"SESSIONGATE_PORT_80_TCP=tcp://10.96.0.12:80",
		"SESSIONGATE_PORT_80_TCP_ADDR=10.96.0.12",
		"SESSIONGATE_PORT_80_TCP_PORT=80",
		"SESSIONGATE_PORT_80_TCP_PROTO=tcp",
		"SESSIONGATE_SERVICE_HOST=10.96.0.12",
		"SESSIONGATE_SERVICE_PORT=80",
		"SESSIONGATE_SERVICE_PORT_HTTP=80",
		"SESSIONGATE_NO_SUCH_KEY=1",
		"SESSIONGATE_=x",
		"NOT_OURS_LISTEN=:1",
		"malformed-without-equals",
	}
	c, err := Load(nil, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(c, Defaults()) {
		t.Errorf("unknown variables changed the configuration:\n got %+v\nwant %+v", c, Defaults())
	}
}

func TestLoadFileErrorsNameTheProblem(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string // substrings of the error
	}{
		{"unknown key", []string{"--config", "testdata/unknown_key.yaml"}, []string{"upstream", "urll"}},
		{"unknown section", []string{"--config", "testdata/unknown_section.yaml"}, []string{"ratelimit"}},
		{"malformed yaml", []string{"--config", "testdata/malformed.yaml"}, []string{"testdata/malformed.yaml"}},
		{"missing file", []string{"--config", "testdata/does-not-exist.yaml"}, []string{"does-not-exist.yaml"}},
		{"unknown flag", []string{"--upstream.urll=x"}, []string{"upstream.urll"}},
		{"stray argument", []string{"serve"}, []string{`"serve"`}},
		{"bad duration flag", []string{"--redis.timeout=fast"}, []string{"redis.timeout", "fast"}},
		{"bad int env", nil, []string{"upstream.max_conns"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var env []string
			if tt.name == "bad int env" {
				env = []string{"SESSIONGATE_UPSTREAM_MAX_CONNS=many"}
			}
			_, err := Load(tt.args, env)
			if err == nil {
				t.Fatal("Load: got no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, arg := range []string{"-h", "--help"} {
		if _, err := Load([]string{arg}, nil); !errors.Is(err, ErrHelp) {
			t.Errorf("Load(%s): got %v, want ErrHelp", arg, err)
		}
	}
	var b strings.Builder
	Usage(&b, "sessiongate", nil)
	for _, k := range Keys {
		// Bool flags print as --name[=true|false].
		named := strings.Contains(b.String(), "--"+k.Name+" ") || strings.Contains(b.String(), "--"+k.Name+"[")
		if !named || !strings.Contains(b.String(), k.EnvName()) {
			t.Errorf("usage lacks --%s or %s", k.Name, k.EnvName())
		}
	}
}

// TestKeysMatchConfig keeps Keys and the Config struct in step: every key
// names a field of its default's type, and every field has a key.
func TestKeysMatchConfig(t *testing.T) {
	seen := map[string]bool{}
	c := Defaults()
	for _, k := range Keys {
		if seen[k.Name] {
			t.Errorf("key %s listed twice", k.Name)
		}
		seen[k.Name] = true
		v, err := c.value(k.Name)
		if err != nil {
			t.Error(err)
			continue
		}
		if reflect.TypeOf(v) != reflect.TypeOf(k.Default) {
			t.Errorf("key %s: field is %T, default is %T", k.Name, v, k.Default)
		}
		if k.Help == "" {
			t.Errorf("key %s has no help text", k.Name)
		}
	}
	var walk func(prefix string, typ reflect.Type)
	walk = func(prefix string, typ reflect.Type) {
		for i := 0; i < typ.NumField(); i++ {
			f := typ.Field(i)
			name := prefix + f.Tag.Get("mapstructure")
			if f.Type.Kind() == reflect.Struct {
				walk(name+".", f.Type)
				continue
			}
			if !seen[name] {
				t.Errorf("Config field %s (key %s) is not in Keys", f.Name, name)
			}
		}
	}
	walk("", reflect.TypeOf(Config{}))
}

// TestLoadNamesEveryProblemWithItsValue: type errors from the environment,
// the file and flags, unknown keys and invalid values are reported together, one
// line per problem, each naming the key, where the value came from and the
// value (a secret's value excepted).
func TestLoadNamesEveryProblemWithItsValue(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	yaml := "proxy:\n  idle_timeout: soon\n  max_conns: [1, 2]\nlisten: nohostport\nupstrem: x\n"
	if err := os.WriteFile(file, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{
		"SESSIONGATE_REDIS_TIMEOUT=fast",
		"SESSIONGATE_UPSTREAM_MAX_CONNS=many",
		"SESSIONGATE_LOG_ACCESS=maybe",
		"SESSIONGATE_REDIS_ON_ERROR=ignore",
	}
	args := []string{"--config", file, "--redis.dial_timeout=slow", "--proxy.max_header_bytes", "lots", "--admin.pprof"}
	_, err := Load(args, env)
	if err == nil {
		t.Fatal("Load: got no error")
	}
	lines := strings.Split(err.Error(), "\n")
	want := [][]string{
		{"redis.timeout", `"fast"`, "SESSIONGATE_REDIS_TIMEOUT", "duration"},
		{"upstream.max_conns", `"many"`, "SESSIONGATE_UPSTREAM_MAX_CONNS", "integer"},
		{"log.access", `"maybe"`, "SESSIONGATE_LOG_ACCESS", "true or false"},
		{"proxy.idle_timeout", `"soon"`, file, "duration"},
		{"proxy.max_conns", "[1 2]", file, "integer"},
		{"listen", `"nohostport"`},
		{"upstrem", "unknown key"},
		{"redis.on_error", `"ignore"`},
		{"redis.dial_timeout", `"slow"`, "--redis.dial_timeout", "duration"},
		{"proxy.max_header_bytes", `"lots"`, "--proxy.max_header_bytes", "integer"},
	}
	for _, w := range want {
		found := false
		for _, line := range lines {
			if strings.HasPrefix(line, w[0]+":") && containsAll(line, w[1:]) {
				found = true
			}
		}
		if !found {
			t.Errorf("no line names %s with %q; got:\n%s", w[0], w[1:], err)
		}
	}
	if len(lines) != len(want) {
		t.Errorf("got %d lines, want %d (one per problem):\n%s", len(lines), len(want), err)
	}
}

// TestLoadTypeErrorHidesSecrets: a secret key of the wrong type is named,
// its value is not.
func TestLoadTypeErrorHidesSecrets(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(file, []byte("redis:\n  password: [hunter2secret]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load([]string{"--config", file}, nil)
	if err == nil || !strings.Contains(err.Error(), "redis.password") || strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("got %v, want an error naming redis.password without its value", err)
	}
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
