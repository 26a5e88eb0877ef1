package test

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestVersionAndHelp(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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
			t.Parallel()
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
	t.Parallel()
	up := StartUpstream(t, func(r *Req) Answer {
		path, _, _ := strings.Cut(r.Target, "?")
		return Answer{Body: "hello from upstream " + path}
	})
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
	t.Parallel()
	up := StartUpstream(t, nil)
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
	if !WaitFor(3*time.Second, func() bool {
		resp, err := http.Get(g.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	}) {
		t.Fatalf("/readyz not 503 within shutdown.delay after SIGTERM")
	}
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

// TestConfigurationProblemsAllAtOnce: values of the wrong type from the
// environment and from flags, and an invalid value, are all reported, one
// line each with the key and the value, and the exit status is 2.
func TestConfigurationProblemsAllAtOnce(t *testing.T) {
	t.Parallel()
	code, out := RunGate(t, map[string]string{
		"SESSIONGATE_REDIS_TIMEOUT":      "fast",
		"SESSIONGATE_UPSTREAM_MAX_CONNS": "many",
	}, "check-config", "--redis.on_error=ignore", "--proxy.idle_timeout", "soon", "--log.access=maybe")
	if code != 2 {
		t.Fatalf("got exit %d, want 2; output:\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, want := range [][]string{
		{"redis.timeout", `"fast"`, "SESSIONGATE_REDIS_TIMEOUT"},
		{"upstream.max_conns", `"many"`, "SESSIONGATE_UPSTREAM_MAX_CONNS"},
		{"redis.on_error", `"ignore"`},
		{"proxy.idle_timeout", `"soon"`, "--proxy.idle_timeout"},
		{"log.access", `"maybe"`, "--log.access"},
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
	if len(lines) != 5 {
		t.Errorf("got %d lines, want 5 (one per problem):\n%s", len(lines), out)
	}
}

// TestCommandHelpShowsItsOwnFlags: `sessiongate <command> --help` and
// `sessiongate help <command>` print that command's flags, not the proxy's
// forty; the bare --help lists the commands and every flag.
func TestCommandHelpShowsItsOwnFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		cmd       string
		want, not []string
	}{
		{"mirror", []string{"--mirror.mongo_url", "--redis.url", "--log.level"}, []string{"--upstream.url", "--listen "}},
		{"demo", []string{"--listen", "--admin.listen", "--log.level"}, []string{"--upstream.url", "--redis.url", "--mirror.mongo_url"}},
		{"healthcheck", []string{"--admin.listen"}, []string{"--upstream.url", "--redis.url", "--listen "}},
		{"check-config", []string{"--upstream.url", "--redis.url", "--mirror.mongo_url"}, nil},
	}
	for _, tt := range tests {
		for _, args := range [][]string{{tt.cmd, "--help"}, {"help", tt.cmd}} {
			code, out := RunGate(t, nil, args...)
			if code != 0 || !strings.HasPrefix(out, "Usage: sessiongate "+tt.cmd+" ") {
				t.Errorf("%q: got exit %d and %q, want 0 and the command's usage", args, code, firstLine(out))
				continue
			}
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("%q: output lacks %s", args, w)
				}
			}
			for _, n := range tt.not {
				if strings.Contains(out, n) {
					t.Errorf("%q: output lists %s, which %s does not take", args, n, tt.cmd)
				}
			}
		}
	}
	code, out := RunGate(t, nil, "help")
	if code != 0 || !strings.Contains(out, "check-config") || !strings.Contains(out, "--upstream.url") {
		t.Errorf("help: got exit %d, output %q; want 0, the commands and every flag", code, out)
	}
	// A flag of another command is refused, pointing at the command's help.
	code, out = RunGate(t, nil, "healthcheck", "--upstream.url=http://x")
	if code != 2 || !strings.Contains(out, "upstream.url") || !strings.Contains(out, "healthcheck --help") {
		t.Errorf("healthcheck --upstream.url: got exit %d, output %q; want 2 naming the flag and the help", code, out)
	}
}

// TestFlagsBeforeTheCommand: flags are parsed after the command, so
// `sessiongate --listen=… demo` says the command must come first instead of
// an "unexpected argument".
func TestFlagsBeforeTheCommand(t *testing.T) {
	t.Parallel()
	code, out := RunGate(t, nil, "--listen=127.0.0.1:0", "demo")
	if code != 2 || !strings.Contains(out, "command must come first") || !strings.Contains(out, "sessiongate demo") {
		t.Errorf("got exit %d, output %q; want 2 and that the command must come first", code, out)
	}
}

// TestVersionFlagReportsTheRevision: --version works like the version
// command, and a plain `go build` in a git checkout reports the commit it
// was built from, not "dev".
func TestVersionFlagReportsTheRevision(t *testing.T) {
	t.Parallel()
	code, byFlag := RunGate(t, nil, "--version")
	_, byCmd := RunGate(t, nil, "version")
	if code != 0 || byFlag != byCmd {
		t.Errorf("--version: got exit %d and %q, want 0 and what version prints (%q)", code, byFlag, byCmd)
	}
	if _, err := exec.LookPath("git"); err != nil {
		t.Skip("git is not on PATH: no VCS information to stamp")
	}
	bin := filepath.Join(t.TempDir(), "sessiongate")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	build.Dir = ".."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	info, err := exec.Command("go", "version", "-m", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	_, rev, ok := strings.Cut(string(info), "vcs.revision=")
	if !ok {
		// The go command stamps no VCS information in some checkouts
		// (a git worktree with older toolchains, a tarball).
		t.Skipf("go build stamped no vcs.revision here:\n%s", info)
	}
	rev = rev[:12]
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(out)); !strings.HasPrefix(got, "sessiongate "+rev) {
		t.Errorf("--version: got %q, want sessiongate %s…", got, rev)
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
