package test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestCheckConfigPrintsEffectiveSettings runs `sessiongate check-config`
// with settings from every layer: it prints them as YAML with the secrets
// redacted and exits 0; the output, saved as a file, loads to the same.
func TestCheckConfigPrintsEffectiveSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	file := filepath.Join(dir, "sessiongate.yaml")
	os.WriteFile(file, []byte("upstream:\n  url: http://rocketchat:3000\nlog:\n  level: warn\n"), 0o600)
	env := map[string]string{
		"SESSIONGATE_REDIS_URL":             "redis://gate:urlsecret@redis.internal:6379/2",
		"SESSIONGATE_REDIS_PASSWORD":        "plainsecret",
		"SESSIONGATE_MIRROR_MONGO_URL":      "mongodb://reader:mongosecret@mongo:27017/rocketchat?replicaSet=rs0",
		"SESSIONGATE_PROXY_TRUSTED_PROXIES": "10.0.0.0/8,192.168.0.1",
		"SESSIONGATE_LOG_LEVEL":             "error",
		// Kubernetes service links for a Service named sessiongate: ignored.
		"SESSIONGATE_PORT":         "tcp://10.96.0.12:80",
		"SESSIONGATE_SERVICE_HOST": "10.96.0.12",
	}
	code, out := RunGate(t, env, "check-config", "--config", file, "--log.level=debug")
	if code != 0 {
		t.Fatalf("check-config: got exit %d, want 0:\n%s", code, out)
	}
	for _, secret := range []string{"urlsecret", "plainsecret", "mongosecret"} {
		if strings.Contains(out, secret) {
			t.Errorf("check-config shows the secret %q:\n%s", secret, out)
		}
	}

	var got struct {
		Upstream struct{ URL string }
		Proxy    struct {
			TrustedProxies []string `yaml:"trusted_proxies"`
		}
		Redis struct {
			URL      string
			Password string
		}
		Log    struct{ Level string }
		Mirror struct {
			MongoURL string `yaml:"mongo_url"`
		}
		Listen string
	}
	if err := yaml.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("check-config output is not YAML: %v\n%s", err, out)
	}
	checks := []struct{ name, got, want string }{
		{"upstream.url (file)", got.Upstream.URL, "http://rocketchat:3000"},
		{"log.level (flag over env over file)", got.Log.Level, "debug"},
		{"redis.url (env, redacted)", got.Redis.URL, "redis://gate:REDACTED@redis.internal:6379/2"},
		{"redis.password (env, redacted)", got.Redis.Password, "REDACTED"},
		{"mirror.mongo_url (env, redacted)", got.Mirror.MongoURL, "mongodb://reader:REDACTED@mongo:27017/rocketchat?replicaSet=rs0"},
		{"proxy.trusted_proxies (env list)", strings.Join(got.Proxy.TrustedProxies, ","), "10.0.0.0/8,192.168.0.1"},
		{"listen (default)", got.Listen, ":8080"},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}

	// The printed settings are a valid configuration file of their own.
	printed := filepath.Join(dir, "printed.yaml")
	os.WriteFile(printed, []byte(out), 0o600)
	code, again := RunGate(t, nil, "check-config", "--config", printed)
	if code != 0 || again != out {
		t.Errorf("check-config of its own output: got exit %d and\n%s\nwant 0 and the same output", code, again)
	}
}

func TestCheckConfigRejectsBadConfiguration(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	os.WriteFile(unknown, []byte("upstream:\n  urll: http://127.0.0.1:3000\n"), 0o600)

	tests := []struct {
		name  string
		env   map[string]string
		args  []string
		wants []string
	}{
		{"unknown file key", nil, []string{"--config", unknown}, []string{"urll"}},
		{"unknown flag", nil, []string{"--upstream.urll=x"}, []string{"upstream.urll"}},
		{"bad value", map[string]string{"SESSIONGATE_REDIS_ON_ERROR": "ignore"}, nil, []string{`redis.on_error: "ignore"`}},
		{"several bad values at once", map[string]string{
			"SESSIONGATE_LOG_FORMAT":       "xml",
			"SESSIONGATE_SHUTDOWN_TIMEOUT": "-1s",
			"SESSIONGATE_UPSTREAM_URL":     "ftp://rocketchat",
		}, nil, []string{`log.format: "xml"`, `shutdown.timeout: "-1s"`, `upstream.url: "ftp://rocketchat"`}},
		{"missing file", nil, []string{"--config", filepath.Join(dir, "nope.yaml")}, []string{"nope.yaml"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			code, out := RunGate(t, tt.env, append([]string{"check-config"}, tt.args...)...)
			if code != 2 {
				t.Fatalf("got exit %d, want 2:\n%s", code, out)
			}
			for _, w := range tt.wants {
				if !strings.Contains(out, w) {
					t.Errorf("output does not name %q:\n%s", w, out)
				}
			}
			if strings.Contains(out, "listen:") && !strings.Contains(out, "sessiongate:") {
				t.Errorf("printed settings despite the error:\n%s", out)
			}
		})
	}
}

// TestExampleConfigurationIsValid: the example file at the top of the
// repository passes check-config as it is.
func TestExampleConfigurationIsValid(t *testing.T) {
	t.Parallel()
	code, out := RunGate(t, nil, "check-config", "--config", "../sessiongate.example.yaml")
	if code != 0 {
		t.Fatalf("check-config sessiongate.example.yaml: got exit %d:\n%s", code, out)
	}
}
