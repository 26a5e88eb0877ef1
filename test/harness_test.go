// Package test holds sessiongate's black-box tests: they build the binary
// once, run it against a real redis-server and stand-in upstreams on
// loopback, and talk to it over HTTP and WebSocket like a client would. It
// imports nothing from the module.
package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// binary is the sessiongate executable built once by TestMain.
var binary string

// requireRedisEnv forbids the miniredis fallback (CI sets it) so the suite
// always runs against a real redis-server there.
const requireRedisEnv = "SESSIONGATE_TEST_REQUIRE_REDIS"

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sessiongate-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "sessiongate")
	// The real-client tests' npm packages install (once, on a fresh
	// checkout) while the binary builds.
	go nodeMissing()
	build := exec.Command("go", "build", "-o", binary, ".")
	build.Dir = ".."
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building sessiongate:", err)
		os.Exit(1)
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(requireRedisEnv) == "1" {
			fmt.Fprintf(os.Stderr, "redis-server not on PATH and %s=1 forbids the miniredis fallback\n", requireRedisEnv)
			os.Exit(1)
		}
		notice("NOTE: redis-server not found on PATH; the black-box tests fall back to miniredis, an embedded Redis-protocol server, and skip what needs a real server (Cluster, Sentinel, pausing). Install redis-server to test against real Redis.")
	}
	// Most tests spend their time waiting on processes and sockets, not
	// on the CPU: unless -parallel was given, run more of them at once than
	// go test's default of one per CPU. Not when fuzzing, where -parallel
	// is the number of fuzzing processes.
	flag.Parse()
	parallelGiven := false
	flag.Visit(func(f *flag.Flag) {
		parallelGiven = parallelGiven || f.Name == "test.parallel" || f.Name == "test.fuzzworker"
	})
	if fz := flag.Lookup("test.fuzz"); !parallelGiven && (fz == nil || fz.Value.String() == "") {
		flag.Set("test.parallel", parallelDefault())
	}
	code := m.Run()
	nodeMissing() // an install still running is not left half done
	os.RemoveAll(dir)
	os.Exit(code)
}

// raceDetector is set when the tests are built with -race.
var raceDetector bool

// parallelDefault is -parallel when none is given: enough tests at once to
// keep two CPUs busy while most of them wait, fewer with the race
// detector, whose CPU cost would otherwise starve the stand-in upstreams
// and clients of the tests running beside them.
func parallelDefault() string {
	if raceDetector {
		return "8"
	}
	return "16"
}

// notice writes msg where a person running `go test ./...` sees it: go test
// shows a passing package's output only with -v, so it goes to the
// terminal (when there is one) as well as to stderr.
func notice(msg string) {
	fmt.Fprintln(os.Stderr, msg)
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		fmt.Fprintln(tty, msg)
		tty.Close()
	}
}

// Redis is a Redis server owned by one test: a redis-server process on a
// free loopback port, or (only where redis-server is missing) miniredis.
type Redis struct {
	t    testing.TB
	Addr string
	dir  string
	args []string
	cmd  *exec.Cmd
	// exited is closed when cmd has exited.
	exited chan struct{}
	mini   *miniredis.Miniredis
}

// StartRedis starts a Redis for t and stops it at cleanup. extra are
// additional redis-server arguments (e.g. "--requirepass", "x").
func StartRedis(t testing.TB, extra ...string) *Redis {
	t.Helper()
	r := &Redis{t: t}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(requireRedisEnv) == "1" {
			t.Fatalf("redis-server not on PATH and %s=1", requireRedisEnv)
		}
		t.Logf("NOTE: using miniredis (redis-server not found)")
		r.mini = miniredis.NewMiniRedis()
		if err := r.mini.Start(); err != nil {
			t.Fatalf("miniredis: %v", err)
		}
		r.Addr = r.mini.Addr()
		t.Cleanup(r.mini.Close)
		return r
	}
	r.dir = t.TempDir()
	r.args = extra
	// Tests run in parallel, so another process may take the free port
	// before redis-server binds it: then try another.
	var err error
	for range 3 {
		r.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
		if err = r.start(); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Real reports whether this is a real redis-server (not miniredis).
func (r *Redis) Real() bool { return r.mini == nil }

// Start (re)starts the server on its address. Data does not survive a
// restart (no persistence).
func (r *Redis) Start() {
	r.t.Helper()
	if r.mini != nil {
		if err := r.mini.Restart(); err != nil {
			r.t.Fatalf("miniredis restart: %v", err)
		}
		return
	}
	if err := r.start(); err != nil {
		r.t.Fatal(err)
	}
}

// start runs redis-server on r.Addr and waits until it accepts
// connections, or reports why it did not.
func (r *Redis) start() error {
	_, port, _ := net.SplitHostPort(r.Addr)
	logPath := filepath.Join(r.dir, "redis.log")
	var logFrom int64 // a restart appends to the log
	if fi, err := os.Stat(logPath); err == nil {
		logFrom = fi.Size()
	}
	// The port answering is not enough: it may be another test's server
	// that took it first. This one says so in its own log.
	ready := func() bool {
		b, _ := os.ReadFile(logPath)
		return int64(len(b)) > logFrom && bytes.Contains(b[logFrom:], []byte("eady to accept connections"))
	}
	args := append([]string{"--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--logfile", logPath}, r.args...)
	r.cmd = exec.Command("redis-server", args...)
	dieWithTest(r.cmd)
	if err := r.cmd.Start(); err != nil {
		return fmt.Errorf("redis-server: %v", err)
	}
	exited := make(chan struct{})
	r.exited = exited
	go func(cmd *exec.Cmd) {
		cmd.Wait()
		close(exited)
	}(r.cmd)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", r.Addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
			if ready() {
				return nil
			}
		}
		select {
		case <-exited:
			// Most often the port was taken between FreePort and here.
			log, _ := os.ReadFile(logPath)
			r.cmd = nil
			return fmt.Errorf("redis-server on %s exited at start: %s", r.Addr, log)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on %s did not start: %v", r.Addr, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Stop stops the server; Start brings it back on the same address.
func (r *Redis) Stop() {
	if r.mini != nil {
		r.mini.Close()
		return
	}
	if r.cmd == nil || r.cmd.Process == nil {
		return
	}
	r.cmd.Process.Kill()
	<-r.exited
	r.cmd = nil
}

// Pause freezes the server process (SIGSTOP) until Resume; with miniredis
// the test is skipped.
func (r *Redis) Pause() {
	r.t.Helper()
	if r.mini != nil {
		r.t.Skip("pausing needs a real redis-server")
	}
	if !pauseProcess(r.cmd.Process) {
		r.t.Skip("pausing a process needs SIGSTOP (Unix only)")
	}
}

// Resume undoes Pause.
func (r *Redis) Resume() { resumeProcess(r.cmd.Process) }

// Client returns a go-redis client for seeding and inspection, closed at
// cleanup.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, DisableIdentity: true, Protocol: 2})
	r.t.Cleanup(func() { c.Close() })
	return c
}

// URL is the redis:// URL of the server.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Gate is a running sessiongate process.
type Gate struct {
	t         testing.TB
	cmd       *exec.Cmd
	URL       string // http://127.0.0.1:port of the client listener
	Addr      string // 127.0.0.1:port of the client listener
	AdminURL  string // http://127.0.0.1:port of the admin listener
	logs      *syncBuffer
	exited    chan struct{}
	exitState *os.ProcessState
}

// GateEnv is the minimal environment of a test gate: loopback listeners on
// ephemeral ports, JSON logs at debug with access lines, a short shutdown.
//
// SESSIONGATE_TEST_EVENT_LOOP, when set, becomes the gate's
// proxy.event_loop: CI runs this package once with the event loop (the
// default) and once without, so both request paths pass the same tests.
func GateEnv(upstreamURL, redisURL string) map[string]string {
	env := map[string]string{
		"SESSIONGATE_LISTEN":           "127.0.0.1:0",
		"SESSIONGATE_ADMIN_LISTEN":     "127.0.0.1:0",
		"SESSIONGATE_UPSTREAM_URL":     upstreamURL,
		"SESSIONGATE_REDIS_URL":        redisURL,
		"SESSIONGATE_LOG_LEVEL":        "debug",
		"SESSIONGATE_LOG_ACCESS":       "true",
		"SESSIONGATE_SHUTDOWN_DELAY":   "0s",
		"SESSIONGATE_SHUTDOWN_TIMEOUT": "5s",
		// A fixed version: the gate does not ask the stand-in upstreams
		// for /api/info, whose requests tests count.
		"SESSIONGATE_ROCKETCHAT_VERSION": "7.3.0",
		// With the tests running at once on a small machine, a Redis
		// answer 250 ms late (the default) is load, not a fault: the
		// route would forward and the test would see the upstream's
		// answer. Tests of the timeout set their own.
		"SESSIONGATE_REDIS_TIMEOUT": "2s",
	}
	if v, ok := os.LookupEnv("SESSIONGATE_TEST_EVENT_LOOP"); ok {
		env["SESSIONGATE_PROXY_EVENT_LOOP"] = v
	}
	return env
}

// StartGate runs the binary with env (on top of a clean environment) and
// args, waits until /readyz answers 200, and stops it at cleanup.
func StartGate(t testing.TB, env map[string]string, args ...string) *Gate {
	t.Helper()
	g := &Gate{t: t, logs: &syncBuffer{}, exited: make(chan struct{})}
	g.cmd = exec.Command(binary, args...)
	dieWithTest(g.cmd)
	g.cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range env {
		g.cmd.Env = append(g.cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	g.cmd.Stderr = pw
	g.cmd.Stdout = pw
	if err := g.cmd.Start(); err != nil {
		t.Fatalf("start sessiongate: %v", err)
	}
	serving := make(chan map[string]any, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Bytes()
			g.logs.Write(append(line, '\n'))
			var m map[string]any
			if json.Unmarshal(line, &m) == nil && m["msg"] == "serving" {
				select {
				case serving <- m:
				default:
				}
			}
		}
	}()
	go func() {
		g.cmd.Wait()
		g.exitState = g.cmd.ProcessState
		pw.Close()
		close(g.exited)
	}()
	t.Cleanup(func() {
		g.cmd.Process.Signal(syscall.SIGKILL)
		<-g.exited
		if t.Failed() {
			t.Logf("sessiongate logs:\n%s", g.Logs())
		}
	})

	select {
	case m := <-serving:
		g.Addr, _ = m["listen"].(string)
		g.URL = "http://" + g.Addr
		if a, _ := m["admin"].(string); a != "" {
			g.AdminURL = "http://" + a
		}
	case <-g.exited:
		t.Fatalf("sessiongate exited before serving (%v):\n%s", g.exitState, g.Logs())
	case <-time.After(10 * time.Second):
		t.Fatalf("sessiongate did not start in 10s:\n%s", g.Logs())
	}
	if g.AdminURL != "" {
		g.WaitReady()
	}
	return g
}

// WaitReady polls /readyz until 200.
func (g *Gate) WaitReady() {
	g.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(g.AdminURL + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	g.t.Fatalf("sessiongate not ready in 10s:\n%s", g.Logs())
}

// Logs returns everything the process wrote so far.
func (g *Gate) Logs() string { return g.logs.String() }

// Signal sends sig to the process.
func (g *Gate) Signal(sig os.Signal) { g.cmd.Process.Signal(sig) }

// Pid is the process id.
func (g *Gate) Pid() int { return g.cmd.Process.Pid }

// Wait waits up to d for the process to exit and returns its exit code.
func (g *Gate) Wait(d time.Duration) int {
	g.t.Helper()
	select {
	case <-g.exited:
		return g.exitState.ExitCode()
	case <-time.After(d):
		g.t.Fatalf("sessiongate still running after %v", d)
		return -1
	}
}

// Metric returns the value of the first /metrics sample whose line starts
// with prefix (e.g. `sessiongate_websocket_tunnels_open `), or -1.
func (g *Gate) Metric(prefix string) float64 {
	g.t.Helper()
	resp, err := http.Get(g.AdminURL + "/metrics")
	if err != nil {
		g.t.Fatalf("metrics: %v", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			f, _ := strconv.ParseFloat(strings.TrimSpace(line[strings.LastIndexByte(line, ' ')+1:]), 64)
			return f
		}
	}
	return -1
}

// linuxOnly skips t, visibly with -v, where the test cannot run: off Linux
// (it reads /proc, or needs the event loop).
func linuxOnly(t testing.TB, why string) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("linux only: " + why)
	}
}

// RSS returns the process's resident set size in bytes (from /proc, so
// Linux only: see linuxOnly).
func (g *Gate) RSS() int64 {
	g.t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", g.Pid()))
	if err != nil {
		g.t.Fatalf("rss: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			f := strings.Fields(line)
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return -1
}

// RunGate runs the binary to completion with env and args and returns its
// exit code and combined output (for --help, version, bad configuration).
func RunGate(t testing.TB, env map[string]string, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, args...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), string(out)
		}
		t.Fatalf("run sessiongate: %v", err)
	}
	return 0, string(out)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
