package test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestVersionAndHelp(t *testing.T) {
	code, out := RunGate(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "sessiongate ") {
		t.Fatalf("version: got code %d output %q, want 0 and \"sessiongate ...\"", code, out)
	}
	code, out = RunGate(t, nil, "--help")
	if code != 0 {
		t.Fatalf("--help: got code %d, want 0", code)
	}
	for _, want := range []string{"--listen", "--upstream.url", "--redis.on_error", "SESSIONGATE_REDIS_KEY_PREFIX", `(default "rc:")`} {
		if !strings.Contains(out, want) {
			t.Errorf("--help output lacks %q", want)
		}
	}
}

func TestBadConfigurationExits2NamingTheKey(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantKey string
	}{
		{"malformed upstream url", map[string]string{"SESSIONGATE_UPSTREAM_URL": "::not a url"}, nil, "upstream.url"},
		{"negative timeout flag", nil, []string{"--upstream.dial_timeout=-1s"}, "upstream.dial_timeout"},
		{"bad on_error", map[string]string{"SESSIONGATE_REDIS_ON_ERROR": "ignore"}, nil, "redis.on_error"},
		{"unknown flag", nil, []string{"--no.such.key=1"}, "no.such.key"},
		{"unbindable listen", map[string]string{"SESSIONGATE_LISTEN": "192.0.2.1:1", "SESSIONGATE_ADMIN_LISTEN": ""}, nil, "listen"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := RunGate(t, tt.env, tt.args...)
			if code != 2 {
				t.Fatalf("got exit %d, want 2; output:\n%s", code, out)
			}
			if !strings.Contains(out, tt.wantKey) {
				t.Errorf("output %q does not name %q", out, tt.wantKey)
			}
		})
	}
}

func TestStartsProxiesAndStopsOnSIGTERM(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello from upstream "+r.URL.Path)
	}))
	defer up.Close()
	rds := StartRedis(t)
	start := time.Now()
	g := StartGate(t, GateEnv(up.URL, rds.URL()))
	t.Logf("ready after %v", time.Since(start))

	resp, err := http.Get(g.URL + "/api/info")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "hello from upstream /api/info" {
		t.Fatalf("got %d %q, want 200 \"hello from upstream /api/info\"", resp.StatusCode, body)
	}

	g.Signal(syscall.SIGTERM)
	if code := g.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM: got %d, want 0", code)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer up.Close()
	rds := StartRedis(t)
	env := GateEnv(up.URL, rds.URL())
	env["SESSIONGATE_SHUTDOWN_DELAY"] = "3s"
	g := StartGate(t, env)
	admin := strings.TrimPrefix(g.AdminURL, "http://")

	if code, out := RunGate(t, map[string]string{"SESSIONGATE_ADMIN_LISTEN": admin}, "healthcheck"); code != 0 {
		t.Fatalf("healthcheck of a ready gate: got exit %d (%s), want 0", code, out)
	}
	// Draining: /readyz turns 503 during shutdown.delay, so the check fails.
	g.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	if code, _ := RunGate(t, map[string]string{"SESSIONGATE_ADMIN_LISTEN": admin}, "healthcheck"); code != 1 {
		t.Fatalf("healthcheck of a draining gate: got exit %d, want 1", code)
	}
	if code := g.Wait(10 * time.Second); code != 0 {
		t.Fatalf("exit after SIGTERM: got %d, want 0", code)
	}
	if code, _ := RunGate(t, map[string]string{"SESSIONGATE_ADMIN_LISTEN": admin}, "healthcheck"); code != 1 {
		t.Fatalf("healthcheck with nothing listening: got exit %d, want 1", code)
	}
}

// TestConfigurationProblemsAllAtOnce: a bad duration from the environment
// and a bad value from a flag are both reported, one line each with the key
// and the value, and the exit status is 2.
func TestConfigurationProblemsAllAtOnce(t *testing.T) {
	code, out := RunGate(t, map[string]string{
		"SESSIONGATE_REDIS_TIMEOUT":      "fast",
		"SESSIONGATE_UPSTREAM_MAX_CONNS": "many",
	}, "check-config", "--redis.on_error=ignore")
	if code != 2 {
		t.Fatalf("got exit %d, want 2; output:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range [][]string{
		{"redis.timeout", `"fast"`, "SESSIONGATE_REDIS_TIMEOUT"},
		{"upstream.max_conns", `"many"`, "SESSIONGATE_UPSTREAM_MAX_CONNS"},
		{"redis.on_error", `"ignore"`},
	} {
		found := false
		for _, line := range lines {
			ok := true
			for _, w := range want {
				ok = ok && strings.Contains(line, w)
			}
			found = found || ok
		}
		if !found {
			t.Errorf("no line names %q; output:\n%s", want, out)
		}
	}
	if len(lines) != 3 {
		t.Errorf("got %d lines, want 3 (one per problem):\n%s", len(lines), out)
	}
}
