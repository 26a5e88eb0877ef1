//go:build linux

// Command faults is sessiongate's fault-injection runner. It
// builds the binary, starts its own redis-server (or a master, a replica and
// a Sentinel), a stand-in Rocket.Chat it can stop, wedge or make cut its
// answers, and sessiongate, all on 127.0.0.1; drives steady mixed load
// (sessions/info hits on seeded Redis data, forwarded REST calls, uploads
// and downloads, WebSocket echo) through each scenario; breaks one thing per
// scenario; and writes the table of what held to docs/reliability.md.
//
//	go run ./bench/faults               every scenario, about 6 minutes
//	go run ./bench/faults -quick        shorter windows, under 2 minutes
//	go run ./bench/faults -soak 10m     a 10-minute soak (run it in the background)
//	go run ./bench/faults -only redis-stop,sigterm -out /tmp/r.md
//
// Every process it starts is stopped by PID when its scenario ends, on
// Ctrl-C, and (parent-death signal) if the runner itself is killed.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

func main() {
	os.Exit(run())
}

func run() int {
	quick := flag.Bool("quick", false, "shorter windows: every scenario in under 2 minutes")
	soak := flag.Duration("soak", 0, "soak duration (default 2m, 15s with -quick)")
	only := flag.String("only", "", "comma-separated scenarios to run (default all): "+strings.Join(scenarioNames, ","))
	out := flag.String("out", "", "report path (default docs/reliability.md in the module)")
	keep := flag.Bool("keep", false, "keep the work folder (process logs) after a run that held")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}

	root, err := moduleRoot()
	if err != nil {
		logf("finding the module: %v", err)
		return 1
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		logf("redis-server is not on PATH (apt-get install redis-server)")
		return 1
	}
	if *out == "" {
		*out = filepath.Join(root, "docs", "reliability.md")
	}
	want := map[string]bool{}
	for _, n := range strings.Split(*only, ",") {
		if n = strings.TrimSpace(n); n != "" {
			if !slices.Contains(scenarioNames, n) {
				logf("unknown scenario %q (have %s)", n, strings.Join(scenarioNames, ", "))
				return 2
			}
			want[n] = true
		}
	}

	dir, err := os.MkdirTemp("", "sessiongate-faults-")
	if err != nil {
		logf("%v", err)
		return 1
	}
	bin := filepath.Join(dir, "sessiongate")
	logf("building sessiongate into %s", bin)
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		logf("build: %v", err)
		return 1
	}

	e := &runEnv{
		bin:  bin,
		dir:  dir,
		data: newDataset(numUsers),
		load: loadConfig{routeWorkers: 4, routeRate: 50, forwardWorkers: 4, forwardRate: 40, wsConns: 8, wsRate: 10},
		// Moderate: half the fault scenarios' load.
		soakL: loadConfig{routeWorkers: 2, routeRate: 50, forwardWorkers: 2, forwardRate: 40, wsConns: 4, wsRate: 10},
		tm:    timing{warm: 5 * time.Second, fault: 10 * time.Second, pause: 5 * time.Second, after: 10 * time.Second},
		soak:  2 * time.Minute,
		logf:  logf,
	}
	mode := "full"
	if *quick {
		mode = "quick"
		e.tm = timing{warm: 2 * time.Second, fault: 3 * time.Second, pause: 3 * time.Second, after: 3 * time.Second}
		e.soak = 15 * time.Second
	}
	if *soak > 0 {
		e.soak = *soak
	}

	command := "go run ./bench/faults"
	if len(os.Args) > 1 {
		command += " " + strings.Join(os.Args[1:], " ")
	}
	info := runInfo{
		command: command, mode: mode, started: time.Now(), revision: revision(root), machine: describeMachine(),
		load: e.load, soakLoad: e.soakL, baseEnv: envSummary(gateEnv("", "")), timing: e.tm,
	}

	var reports []*scenarioReport
	runOne := func(name string, f func() *scenarioReport) {
		if (len(want) > 0 && !want[name]) || ctx.Err() != nil {
			return
		}
		logf("scenario %s", name)
		r := f()
		verdict := "held"
		if !r.held() {
			verdict = "DID NOT HOLD"
			if r.err != nil {
				verdict += ": " + r.err.Error()
			}
			for _, c := range r.checks {
				if !c.ok {
					verdict += "; " + c.what + " (" + c.detail + ")"
				}
			}
		}
		logf("scenario %s: %s (%v)", name, verdict, r.elapsed.Round(time.Second))
		reports = append(reports, r)
	}
	for _, s := range e.faultSpecs() {
		runOne(s.name, func() *scenarioReport { return e.runFault(ctx, s) })
	}
	runOne("sigterm", func() *scenarioReport { return e.runSIGTERM(ctx) })
	runOne("soak", func() *scenarioReport { return e.runSoak(ctx) })
	info.took = time.Since(info.started)

	if ctx.Err() != nil {
		logf("interrupted; no report written; logs in %s", dir)
		return 1
	}
	if err := writeReport(*out, info, reports); err != nil {
		logf("writing %s: %v", *out, err)
		return 1
	}
	logf("wrote %s (%v)", *out, info.took.Round(time.Second))
	held := true
	for _, r := range reports {
		held = held && r.held()
	}
	if held && !*keep {
		os.RemoveAll(dir)
	} else {
		logf("process logs kept in %s", dir)
	}
	if !held {
		return 3
	}
	return 0
}

// scenarioNames lists the scenarios in the order they run.
var scenarioNames = []string{"redis-stop", "redis-stop-503", "redis-pause", "sentinel-failover",
	"upstream-stop", "upstream-hang", "upstream-cut", "sigterm", "soak"}

// moduleRoot is the folder of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", err
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("not inside a Go module")
	}
	return filepath.Dir(gomod), nil
}
