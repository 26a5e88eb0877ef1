//go:build linux

// Command bench is sessiongate's side-by-side load harness. One
// command, run from the repository root:
//
//	go run ./bench          # full run, ≤ 10 minutes
//	go run ./bench -quick   # ≤ 2 minutes, smaller transfers and fewer tunnels
//
// It builds sessiongate and two helpers (bench/cmd/upstream, a fast stand-in
// Rocket.Chat; bench/cmd/floor, the minimal route handler), starts its own
// redis-server on a free loopback port and seeds it, runs nginx as a peer
// proxy in front of the same upstream, probes that every target answers
// correctly, then measures in interleaved rounds with wrk and
// redis-benchmark, moves a large upload and download through each proxy,
// and holds thousands of idle WebSocket tunnels open; with -cases rcmix it
// also runs a Rocket.Chat-shaped mix of WebSockets, held polls, streams and
// REST against sessiongate and nginx (rcmix.go). It prints one report
// and writes it, with the raw samples and every process's log, to
// bench/out/<time>/ (results.txt, results.md, results.json, logs/).
//
// Nothing is installed: missing tools are named with the command that
// installs them. Every process it starts is stopped by PID at the end, on
// Ctrl-C and on failure. See bench/README.md.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// Target names, as they appear in the report.
const (
	tGate     = "sessiongate"
	tNginx    = "nginx"
	tUpstream = "upstream direct"
	tFloor    = "floor (fasthttp+go-redis)"
	tRedis    = "redis-benchmark GET"
)

type options struct {
	quick        bool
	rounds       int
	duration     time.Duration
	conns        int
	users        int
	transferSize int64
	tunnels      int
	cases        string
	budget       time.Duration
	nginxWorkers int
	binary       string
	src          string
	out          string
	keep         bool
	strict       bool
	profile      bool
	gateEnv      multiFlag

	// The rcmix case (rcmix.go).
	rcmixWS, rcmixPolls, rcmixStreams int
	rcmixRate, rcmixConns             int
	rcmixDuration                     time.Duration
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// allCases lists the case keys -cases accepts, in run order; "all" selects
// every one. defaultCases leaves out rcmix, which runs minutes on its own.
var (
	allCases     = []string{"get64", "get1", "post16k", "info", "mix", "transfer", "tunnels", "rcmix"}
	defaultCases = allCases[:len(allCases)-1]
)

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	flag.BoolVar(&o.quick, "quick", false, "short run (≤ 2 min): 3 rounds of 2 s, 256 MiB transfers, 2000 tunnels")
	flag.IntVar(&o.rounds, "rounds", 5, "interleaved rounds (medians are over rounds)")
	flag.DurationVar(&o.duration, "duration", 6*time.Second, "length of one run (whole seconds)")
	flag.IntVar(&o.conns, "conns", 64, "connections for the concurrent cases")
	flag.IntVar(&o.users, "users", 10000, "users seeded into Redis (each with 2 tokens and 3 sessions)")
	flag.Int64Var(&o.transferSize, "transfer-bytes", 1<<30, "size of the upload and the download")
	flag.IntVar(&o.tunnels, "tunnels", 10000, "idle WebSocket tunnels to hold open")
	flag.StringVar(&o.cases, "cases", strings.Join(defaultCases, ","), "comma-separated cases to run (all: every case, with rcmix)")
	flag.DurationVar(&o.budget, "budget", 10*time.Minute, "hard limit for the run after the build")
	flag.IntVar(&o.nginxWorkers, "nginx-workers", runtime.NumCPU(), "nginx worker_processes (default: nproc, as sessiongate's GOMAXPROCS)")
	flag.StringVar(&o.binary, "binary", "", "use this sessiongate binary instead of building one")
	flag.StringVar(&o.src, "src", "", "build sessiongate from this source tree (e.g. a `git archive` snapshot) instead of the repository root")
	flag.StringVar(&o.out, "out", "", "results folder (default bench/out/<time>)")
	flag.BoolVar(&o.keep, "keep", false, "keep the temporary folder (binaries, configs, scripts)")
	flag.BoolVar(&o.profile, "profile", false, "take a CPU profile of sessiongate during each case of the last round (needs /debug/pprof on its admin listener)")
	flag.BoolVar(&o.strict, "strict", false, "exit 1 when a target answered wrongly or a run failed (for CI smoke runs; performance goals are never judged)")
	flag.Var(&o.gateEnv, "gate-env", "extra SESSIONGATE_*=value for sessiongate (repeatable)")
	flag.IntVar(&o.rcmixWS, "rcmix-ws", 2000, "rcmix: DDP WebSocket connections")
	flag.IntVar(&o.rcmixPolls, "rcmix-polls", 200, "rcmix: xhr-polling clients")
	flag.IntVar(&o.rcmixStreams, "rcmix-streams", 50, "rcmix: xhr-streaming clients")
	flag.IntVar(&o.rcmixRate, "rcmix-rate", 2000, "rcmix: REST requests per second (fixed rate)")
	flag.IntVar(&o.rcmixConns, "rcmix-conns", 64, "rcmix: REST connections")
	flag.DurationVar(&o.rcmixDuration, "rcmix-duration", time.Minute, "rcmix: measured window per run (default: -duration when that is given, else 60s)")
	flag.Parse()
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["duration"] && !set["rcmix-duration"] {
		o.rcmixDuration = o.duration
	}
	if o.quick {
		quick := map[string]func(){
			"rounds":         func() { o.rounds = 3 },
			"duration":       func() { o.duration = 2 * time.Second },
			"transfer-bytes": func() { o.transferSize = 256 << 20 },
			"tunnels":        func() { o.tunnels = 2000 },
			"budget":         func() { o.budget = 2 * time.Minute },
			"rcmix-duration": func() { o.rcmixDuration = 20 * time.Second },
		}
		for name, apply := range quick {
			if !set[name] {
				apply()
			}
		}
	}

	if !set["budget"] && (strings.Contains(","+o.cases+",", ",rcmix,") || strings.Contains(","+o.cases+",", ",all,")) {
		// Each rcmix run: its window, the ramp and the close, per target.
		o.budget += time.Duration(o.rounds) * 2 * (o.rcmixDuration + 45*time.Second)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	h, err := newHarness(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer h.close()
	if err := h.run(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		if errors.Is(err, errMissingTools) {
			return 2
		}
		return 1
	}
	return 0
}

var errMissingTools = errors.New("missing tools")

// harness is one run: its folders, processes and results.
type harness struct {
	o      options
	root   string // repository root
	src    string // sessiongate's source tree (-src, default root)
	tmp    string
	outDir string
	procs  *proc.Set
	cases  map[string]bool
	report io.Writer // stdout and results.txt
	txt    *os.File

	bins    map[string]string // sessiongate, upstream, floor
	scripts map[string]string

	redisAddr    string
	upstreamAddr string
	floorAddr    string
	nginxAddr    string
	nginxProc    *proc.Proc
	gates        int

	res results
}

// results is everything measured, also written as results.json.
type results struct {
	Started  time.Time
	Machine  []string
	Setup    []string
	Probes   map[string]map[string]string
	Samples  map[string]map[string][]sample
	Failures map[string]map[string][]string
	Transfer []transferResult
	Tunnels  []tunnelResult
	RCMix    []rcmixResult
	Notes    []string
	Warnings []string
}

func newHarness(o options) (*harness, error) {
	root, err := findRoot()
	if err != nil {
		return nil, err
	}
	h := &harness{o: o, root: root, src: root, cases: map[string]bool{}}
	if o.src != "" {
		if h.src, err = filepath.Abs(o.src); err != nil {
			return nil, err
		}
	}
	for _, c := range strings.Split(o.cases, ",") {
		c = strings.TrimSpace(c)
		if c == "" {
			continue
		}
		if c == "all" {
			for _, a := range allCases {
				h.cases[a] = true
			}
			continue
		}
		if !contains(allCases, c) {
			return nil, fmt.Errorf("-cases: unknown case %q (known: %s)", c, strings.Join(allCases, ","))
		}
		h.cases[c] = true
	}
	for name, v := range map[string]int{"-rcmix-ws": o.rcmixWS, "-rcmix-polls": o.rcmixPolls, "-rcmix-streams": o.rcmixStreams,
		"-rcmix-rate": o.rcmixRate, "-rcmix-conns": o.rcmixConns} {
		if v < 0 {
			return nil, fmt.Errorf("%s: %d is negative", name, v)
		}
	}
	if h.cases["rcmix"] && o.rcmixDuration < time.Second {
		return nil, fmt.Errorf("-rcmix-duration: %v is under a second", o.rcmixDuration)
	}
	h.res = results{
		Started:  time.Now().UTC(),
		Probes:   map[string]map[string]string{},
		Samples:  map[string]map[string][]sample{},
		Failures: map[string]map[string][]string{},
	}
	h.outDir = o.out
	if h.outDir == "" {
		h.outDir = filepath.Join(root, "bench", "out", h.res.Started.Format("20060102-150405"))
	}
	if err := os.MkdirAll(filepath.Join(h.outDir, "logs"), 0o755); err != nil {
		return nil, err
	}
	if h.txt, err = os.Create(filepath.Join(h.outDir, "results.txt")); err != nil {
		return nil, err
	}
	h.report = io.MultiWriter(os.Stdout, h.txt)
	if h.tmp, err = os.MkdirTemp("", "sessiongate-bench-"); err != nil {
		return nil, err
	}
	// The Go runtime knobs pass through if the person running the harness set
	// them on purpose; a reused -out folder gets fresh logs.
	h.procs = &proc.Set{
		Dir:      filepath.Join(h.outDir, "logs"),
		Env:      proc.CleanEnv("GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"),
		Truncate: true,
	}
	return h, nil
}

func (h *harness) close() {
	h.procs.StopAll()
	if h.o.keep {
		fmt.Fprintf(os.Stderr, "bench: kept %s\n", h.tmp)
	} else {
		os.RemoveAll(h.tmp)
	}
	h.txt.Close()
}

func (h *harness) printf(format string, args ...any) { fmt.Fprintf(h.report, format, args...) }

// started is when the harness started, for progress lines.
var started = time.Now()

// progress goes to stderr only: it is not part of the report.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: %5.1fs "+format+"\n", append([]any{time.Since(started).Seconds()}, args...)...)
}

// run builds (bounded on its own: a cold build cache on a busy machine is
// not the harness's time), then runs everything else within -budget.
func (h *harness) run(ctx context.Context) error {
	if err := checkTools(); err != nil {
		return err
	}
	h.raiseFileLimit()
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	err := h.build(bctx)
	cancel()
	if err != nil {
		return err
	}
	ctx, cancel = context.WithTimeout(ctx, h.o.budget)
	defer cancel()
	if err := h.startServices(ctx); err != nil {
		return err
	}
	h.describe()

	if h.loadCasesSelected() {
		err = h.runRounds(ctx)
	}
	if err == nil && h.cases["transfer"] {
		err = h.runTransfers(ctx)
	}
	if err == nil && h.cases["tunnels"] {
		err = h.runTunnels(ctx)
	}
	if err == nil && h.cases["rcmix"] {
		err = h.runRCMix(ctx)
	}
	if err != nil {
		h.res.Warnings = append(h.res.Warnings, "run cut short: "+err.Error())
	}
	h.writeReport()
	if err != nil {
		return err
	}
	if h.o.strict {
		if problems := h.problems(); len(problems) > 0 {
			return fmt.Errorf("-strict: %d problem(s):\n  %s", len(problems), strings.Join(problems, "\n  "))
		}
	}
	return nil
}

// problems lists wrong answers and failed runs, transfers and tunnels:
// what -strict fails on. Missed performance goals are not problems here.
func (h *harness) problems() []string {
	var out []string
	for _, c := range h.loadCases() {
		for _, t := range c.targets {
			if v := h.res.Probes[c.key][t]; strings.HasPrefix(v, "WRONG") {
				out = append(out, c.key+" → "+t+": "+v)
			}
			for _, f := range h.res.Failures[c.key][t] {
				out = append(out, c.key+" → "+t+": run failed: "+f)
			}
		}
	}
	for _, r := range h.res.Transfer {
		if r.Err != "" {
			out = append(out, r.Direction+" → "+r.Target+": "+r.Err)
		}
	}
	for _, r := range h.res.Tunnels {
		if r.Err != "" || r.Opened < r.Wanted {
			out = append(out, fmt.Sprintf("tunnels → %s: %d/%d open %s", r.Target, r.Opened, r.Wanted, r.Err))
		}
	}
	for _, r := range h.res.RCMix {
		if r.Err != "" {
			out = append(out, fmt.Sprintf("rcmix round %d → %s: run failed: %s", r.Round, r.Target, r.Err))
		}
		for k, n := range r.Errors {
			out = append(out, fmt.Sprintf("rcmix round %d → %s: %d %s error(s), first: %s", r.Round, r.Target, n, k, r.FirstErrors[k]))
		}
		if r.Err == "" && r.WSOpen < r.WSWanted {
			out = append(out, fmt.Sprintf("rcmix round %d → %s: %d/%d WebSockets open", r.Round, r.Target, r.WSOpen, r.WSWanted))
		}
	}
	return out
}

// checkTools names every missing tool and the command that installs it.
func checkTools() error {
	pkgs := map[string]string{
		"go": "golang (or https://go.dev/dl)", "nginx": "nginx", "wrk": "wrk",
		"redis-server": "redis-server", "redis-benchmark": "redis-tools",
	}
	var missing, install []string
	for _, tool := range []string{"go", "nginx", "wrk", "redis-server", "redis-benchmark"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
			if tool != "go" {
				install = append(install, pkgs[tool])
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	fmt.Fprintf(os.Stderr, "bench: not found on PATH: %s\n", strings.Join(missing, ", "))
	if len(install) > 0 {
		fmt.Fprintf(os.Stderr, "bench: install with:\n  sudo apt-get update && sudo apt-get install -y %s\n", strings.Join(install, " "))
	}
	return errMissingTools
}

// raiseFileLimit lifts RLIMIT_NOFILE for this process and the children it
// starts (they inherit it): each idle tunnel holds two descriptors in the
// proxy (client and upstream side) and one here and in the upstream. Where
// the hard limit cannot be raised (no CAP_SYS_RESOURCE, as in some
// containers) the number of tunnels shrinks to fit and the report says so.
func (h *harness) raiseFileLimit() {
	const slack = 256 // listeners, pools, logs, /proc reads
	// The rcmix case holds one descriptor per client here and two in the
	// proxy, like the tunnels.
	mix := 0
	if h.cases["rcmix"] {
		mix = h.rcmixClients()
	}
	tunnels := 0
	if h.cases["tunnels"] {
		tunnels = max(0, h.o.tunnels)
	}
	if tunnels == 0 && mix == 0 {
		return
	}
	want := uint64(2*max(tunnels, mix) + slack)
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if rl.Cur >= want {
		return
	}
	nl := syscall.Rlimit{Cur: want, Max: max(rl.Max, want)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl); err == nil {
		return
	}
	nl = syscall.Rlimit{Cur: rl.Max, Max: rl.Max}
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &nl)
	if mix > 0 && uint64(2*mix+slack) > nl.Cur {
		h.res.Warnings = append(h.res.Warnings, fmt.Sprintf(
			"RLIMIT_NOFILE hard limit is %d and cannot be raised here: the rcmix case's %d clients need about %d descriptors in sessiongate; expect connection errors",
			rl.Max, mix, 2*mix+slack))
	}
	if tunnels == 0 {
		return
	}
	fit := 0
	if nl.Cur > slack {
		fit = int(nl.Cur-slack) / 2
	}
	if fit < h.o.tunnels {
		h.res.Warnings = append(h.res.Warnings, fmt.Sprintf(
			"RLIMIT_NOFILE hard limit is %d and cannot be raised here: tunnels reduced from %d to %d (sessiongate holds 2 descriptors per tunnel)",
			rl.Max, h.o.tunnels, fit))
		h.o.tunnels = fit
	}
}

// build compiles sessiongate (as the Dockerfile/CI does, without -race) and
// the two helpers into the temporary folder.
func (h *harness) build(ctx context.Context) error {
	h.bins = map[string]string{}
	type target struct{ name, dir, pkg string }
	builds := []target{{"upstream", h.root, "./bench/cmd/upstream"}, {"floor", h.root, "./bench/cmd/floor"}}
	if h.o.binary == "" {
		builds = append([]target{{"sessiongate", h.src, "."}}, builds...)
	} else {
		abs, err := filepath.Abs(h.o.binary)
		if err != nil {
			return err
		}
		h.bins["sessiongate"] = abs
	}
	for _, b := range builds {
		out := filepath.Join(h.tmp, b.name)
		progress("building %s in %s", b.pkg, b.dir)
		cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, b.pkg)
		cmd.Dir = b.dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s in %s: %v\n%s\n(a tree that is being edited may not build: "+
				"measure a snapshot with  git archive HEAD | tar -x -C /tmp/snap && go run ./bench -src /tmp/snap)", b.pkg, b.dir, err, msg)
		}
		h.bins[b.name] = out
	}
	var err error
	h.scripts, err = writeScripts(h.tmp, h.o.users)
	return err
}

func (h *harness) startServices(ctx context.Context) error {
	// Redis: its own server on a free port, never the machine's 6379; no
	// persistence.
	var err error
	if h.redisAddr, err = proc.FreeAddr(); err != nil {
		return err
	}
	_, port, _ := strings.Cut(h.redisAddr, ":")
	rdir := filepath.Join(h.tmp, "redis")
	os.MkdirAll(rdir, 0o755)
	rp, err := h.procs.Start("redis-server", nil, "redis-server", "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", rdir)
	if err != nil {
		return err
	}
	if err := proc.WaitTCP(ctx, rp, h.redisAddr, 10*time.Second); err != nil {
		return err
	}
	rdb := redis.NewClient(&redis.Options{Addr: h.redisAddr, Protocol: 2, DisableIdentity: true})
	defer rdb.Close()
	progress("seeding %d users into redis-server on %s", h.o.users, h.redisAddr)
	t0 := time.Now()
	keys, err := seed(ctx, rdb, h.o.users)
	if err != nil {
		return fmt.Errorf("seeding Redis: %w", err)
	}
	h.res.Setup = append(h.res.Setup, fmt.Sprintf("data: %d users × %d tokens × %d sessions = %d keys in %.1fs; session values %d B (seed's document)",
		h.o.users, tokensPerUser, sessionsPerUser, keys, time.Since(t0).Seconds(), len(sessionDoc(0, 0))))

	// The stand-in upstream and the floor.
	if h.upstreamAddr, err = proc.FreeAddr(); err != nil {
		return err
	}
	up, err := h.procs.Start("upstream", nil, h.bins["upstream"], "-listen", h.upstreamAddr)
	if err != nil {
		return err
	}
	if err := proc.WaitTCP(ctx, up, h.upstreamAddr, 10*time.Second); err != nil {
		return err
	}
	if h.floorAddr, err = proc.FreeAddr(); err != nil {
		return err
	}
	fl, err := h.procs.Start("floor", nil, h.bins["floor"], "-listen", h.floorAddr,
		"-redis", "redis://"+h.redisAddr+"/0", "-prefix", keyPrefix)
	if err != nil {
		return err
	}
	if err := proc.WaitTCP(ctx, fl, h.floorAddr, 10*time.Second); err != nil {
		return err
	}

	// nginx, the peer.
	if h.nginxAddr, err = proc.FreeAddr(); err != nil {
		return err
	}
	ndir := filepath.Join(h.tmp, "nginx")
	conf, err := writeNginxConf(ndir, h.o.nginxWorkers, h.upstreamAddr, h.nginxAddr, 2*max(h.o.tunnels, h.rcmixClients())+4096)
	if err != nil {
		return err
	}
	if h.nginxProc, err = h.procs.Start("nginx", nil, "nginx", nginxArgs(ndir, conf)...); err != nil {
		return err
	}
	if err := proc.WaitTCP(ctx, h.nginxProc, h.nginxAddr, 10*time.Second); err != nil {
		b, _ := os.ReadFile(filepath.Join(ndir, "error.log"))
		return fmt.Errorf("%w\nnginx error.log:\n%s", err, b)
	}
	copyFile(conf, filepath.Join(h.outDir, "nginx.conf"))
	return nil
}

// gate is one running sessiongate.
type gate struct {
	p     *proc.Proc
	addr  string
	admin string // http://host:port
}

// startGate starts a fresh sessiongate: access log off (as nginx's), metrics
// on, info-level logs to its log file, no shutdown delay.
func (h *harness) startGate(ctx context.Context) (*gate, error) {
	h.gates++
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	admin, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	env := append([]string{
		"SESSIONGATE_LISTEN=" + addr,
		"SESSIONGATE_ADMIN_LISTEN=" + admin,
		"SESSIONGATE_UPSTREAM_URL=http://" + h.upstreamAddr,
		"SESSIONGATE_REDIS_URL=redis://" + h.redisAddr + "/0",
		"SESSIONGATE_REDIS_KEY_PREFIX=" + keyPrefix,
		"SESSIONGATE_LOG_LEVEL=info",
		"SESSIONGATE_LOG_ACCESS=false",
		"SESSIONGATE_SHUTDOWN_DELAY=0s",
		"SESSIONGATE_SHUTDOWN_TIMEOUT=5s",
	}, h.o.gateEnv...)
	if h.o.profile {
		// -profile reads /debug/pprof from the admin listener.
		env = append(env, "SESSIONGATE_ADMIN_PPROF=true")
	}
	p, err := h.procs.Start(fmt.Sprintf("sessiongate-%d", h.gates), env, h.bins["sessiongate"])
	if err != nil {
		return nil, err
	}
	g := &gate{p: p, addr: addr, admin: "http://" + admin}
	if err := proc.WaitTCP(ctx, p, addr, 10*time.Second); err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := probeClient.Get(g.admin + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return g, nil
			}
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sessiongate not ready after 10s (see %s)", p.LogPath())
		}
		if err := proc.Sleep(ctx, 50*time.Millisecond); err != nil {
			return nil, err
		}
	}
}

func (h *harness) stopGate(g *gate) {
	g.p.Stop(5 * time.Second)
}

// describe records the machine, the versions, the tree and the setup at the
// top of the report.
func (h *harness) describe() {
	cpu := proc.CPUModel()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	load := loadAvg()
	m := []string{
		fmt.Sprintf("machine: nproc %d, %s, Linux %s, %s; load average at start %s", runtime.NumCPU(), cpu, strings.TrimSpace(string(kernel)), memTotal(), load),
		fmt.Sprintf("tools: %s; %s; %s; %s", goVersion(), firstLine("nginx", "-v"), firstLine("wrk", "-v"), firstLine("redis-server", "--version")),
		"sessiongate: " + h.treeState(),
	}
	if len(h.o.gateEnv) > 0 {
		// Runs that differ only in settings must be told apart afterwards.
		m[len(m)-1] += "; with " + strings.Join(h.o.gateEnv, " ")
	}
	if d := h.firstDrafts(); len(d) > 0 {
		m = append(m, "first drafts in the tree at run time: "+strings.Join(d, ", "))
	}
	h.res.Machine = m
	var l1 float64
	if _, err := fmt.Sscanf(load, "%g", &l1); err == nil && l1 > float64(runtime.NumCPU())/2 {
		h.res.Warnings = append(h.res.Warnings, fmt.Sprintf(
			"the machine was busy before the run (load average %s on %d CPUs): absolute numbers are noisy; the interleaved ratios less so", load, runtime.NumCPU()))
	}
	h.res.Setup = append(h.res.Setup,
		fmt.Sprintf("CPU split: wrk -t1 (one thread) and redis-benchmark (single-threaded) take about one core; the target and the upstream share the rest, unpinned. "+
			"sessiongate, upstream and floor run with Go's default GOMAXPROCS=%d; nginx worker_processes %d (= nproc), keepalive 64 to the upstream, buffering off both ways, access log off.",
			runtime.GOMAXPROCS(0), h.o.nginxWorkers),
		fmt.Sprintf("runs: %d interleaved rounds × %v per case and target (order rotated each round), medians over rounds; %d connections for the concurrent cases; sessiongate access log off, metrics on.",
			h.o.rounds, h.o.duration, h.o.conns),
	)
	h.printf("# sessiongate side-by-side load harness — %s\n\n", h.res.Started.Format(time.RFC3339))
	for _, l := range append(m, h.res.Setup...) {
		h.printf("%s\n", l)
	}
	h.printf("\n")
}

// loadAvg is the 1, 5 and 15 minute load averages.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return ""
	}
	var kb int64
	fmt.Sscanf(strings.TrimPrefix(strings.SplitN(string(b), "\n", 2)[0], "MemTotal:"), "%d", &kb)
	return fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

// firstLine is the first line a tool prints about its version (nginx
// prints it on stderr).
func firstLine(name string, args ...string) string {
	out, _ := exec.Command(name, args...).CombinedOutput()
	s := strings.TrimSpace(string(out))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, " Copyright"); i >= 0 {
		s = s[:i]
	}
	return s
}

// treeState is the commit sessiongate was built from and whether the tree
// had uncommitted changes (read-only git calls).
func (h *harness) treeState() string {
	if h.o.binary != "" {
		return "prebuilt binary " + h.o.binary
	}
	rev, err := exec.Command("git", "-C", h.src, "rev-parse", "--short", "HEAD").Output()
	if err != nil || h.src != h.root {
		return "built from " + h.src
	}
	s := "built from commit " + strings.TrimSpace(string(rev))
	if st, err := exec.Command("git", "-C", h.src, "status", "--porcelain").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		s += " plus uncommitted changes"
	}
	return s
}

// firstDrafts lists Go files outside bench/ and test/ still marked
// "FIRST DRAFT": numbers measured against them are not the product's.
func (h *harness) firstDrafts() []string {
	if h.o.binary != "" {
		return nil // the source of a prebuilt binary is unknown
	}
	var out []string
	filepath.WalkDir(h.src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		rel, _ := filepath.Rel(h.src, p)
		if d.IsDir() {
			if rel == "bench" || rel == "test" || strings.HasPrefix(d.Name(), ".") && rel != "." {
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			if b, err := os.ReadFile(p); err == nil && bytes.Contains(b, []byte("FIRST DRAFT")) {
				out = append(out, rel)
			}
		}
		return nil
	})
	return out
}

func findRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/sessiongate/sessiongate\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("run from inside the sessiongate repository (no go.mod of github.com/sessiongate/sessiongate above the current folder)")
		}
		dir = parent
	}
}

func copyFile(from, to string) {
	if b, err := os.ReadFile(from); err == nil {
		os.WriteFile(to, b, 0o644)
	}
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// writeReport prints the tables and writes results.md and results.json,
// also as bench/out/latest.md.
func (h *harness) writeReport() {
	tables := h.tables()
	var md strings.Builder
	md.WriteString(fmt.Sprintf("### sessiongate vs peers — %s\n\n", h.res.Started.Format(time.RFC3339)))
	for _, l := range append(h.res.Machine, h.res.Setup...) {
		md.WriteString("- " + l + "\n")
	}
	md.WriteString("\n")
	for _, t := range tables {
		h.printf("%s\n", t.text())
		md.WriteString(t.markdown() + "\n")
	}
	h.res.Notes = append(h.res.Notes, "load average at the end: "+loadAvg())
	for _, n := range h.res.Notes {
		h.printf("%s\n", n)
		md.WriteString("- " + n + "\n")
	}
	for _, w := range h.res.Warnings {
		h.printf("WARNING: %s\n", w)
		md.WriteString("- WARNING: " + w + "\n")
	}
	os.WriteFile(filepath.Join(h.outDir, "results.md"), []byte(md.String()), 0o644)
	if b, err := json.MarshalIndent(h.res, "", "  "); err == nil {
		os.WriteFile(filepath.Join(h.outDir, "results.json"), b, 0o644)
	}
	h.printf("results: %s (results.txt, results.md, results.json, logs/)\n", h.outDir)
	if h.o.out == "" {
		latest := filepath.Join(h.root, "bench", "out", "latest.md")
		copyFile(filepath.Join(h.outDir, "results.md"), latest)
		h.printf("Markdown also in %s\n", latest)
	}
}
