//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// loadCase is one request-rate case of the harness. The first target is
// sessiongate; the others are its peers in the report's ratios.
type loadCase struct {
	key     string
	title   string
	script  string // key into harness.scripts
	path    string // request path for static scripts
	conns   int
	targets []string
	// goalPeer and the limits are the performance targets: sessiongate's req/s at
	// least minRPS × the peer's, its p99 at most maxP99 × the peer's (0: no
	// p99 goal).
	goalPeer       string
	minRPS, maxP99 float64
}

func (h *harness) loadCases() []loadCase {
	all := []loadCase{
		{key: "get64", title: fmt.Sprintf("forwarded GET, 1 KB answer, %d conns", h.o.conns), script: "get", path: "/api/v1/me",
			conns: h.o.conns, targets: []string{tGate, tNginx, tUpstream}, goalPeer: tNginx, minRPS: 1.0, maxP99: 1.2},
		{key: "get1", title: "forwarded GET, 1 KB answer, 1 conn", script: "get", path: "/api/v1/me",
			conns: 1, targets: []string{tGate, tNginx, tUpstream}, goalPeer: tNginx, minRPS: 1.0, maxP99: 1.2},
		{key: "post16k", title: fmt.Sprintf("forwarded POST, 16 KiB body echoed, %d conns", h.o.conns), script: "post", path: "/api/v1/method.call/sendMessage",
			conns: h.o.conns, targets: []string{tGate, tNginx}},
		{key: "info", title: fmt.Sprintf("sessions/info, all hits, %d conns", h.o.conns), script: "info",
			conns: h.o.conns, targets: []string{tGate, tFloor, tRedis}, goalPeer: tFloor, minRPS: 0.9},
		{key: "mix", title: fmt.Sprintf("sessions/info, 80%% hit / 10%% 401 / 10%% 404, %d conns", h.o.conns), script: "mix",
			conns: h.o.conns, targets: []string{tGate, tFloor}},
	}
	var out []loadCase
	for _, c := range all {
		if h.cases[c.key] {
			out = append(out, c)
		}
	}
	return out
}

func (h *harness) loadCasesSelected() bool { return len(h.loadCases()) > 0 }

// runRounds measures the load cases: one sessiongate for all rounds,
// answers probed first, a short warm-up per target, then every case for
// every target back to back, round after round, the target order rotated
// each round so no target always runs first.
func (h *harness) runRounds(ctx context.Context) error {
	g, err := h.startGate(ctx)
	if err != nil {
		return err
	}
	defer h.stopGate(g)
	base := map[string]string{
		tGate:     "http://" + g.addr,
		tNginx:    "http://" + h.nginxAddr,
		tUpstream: "http://" + h.upstreamAddr,
		tFloor:    "http://" + h.floorAddr,
	}
	cases := h.loadCases()

	// What the upstream itself answers is what a proxy must answer.
	_, wantGET, err := probeDo("GET", base[tUpstream]+"/api/v1/me", "", authHeader(1, 0))
	if err != nil {
		return fmt.Errorf("upstream: %w", err)
	}
	for _, c := range cases {
		h.res.Probes[c.key] = map[string]string{}
		for _, t := range c.targets {
			var err error
			switch {
			case t == tRedis:
				continue
			case c.script == "get":
				err = probeForwardGET(base[t], c.path, wantGET)
			case c.script == "post":
				err = probeForwardPOST(base[t], c.path)
			default:
				err = probeRoute(base[t], h.o.users)
			}
			verdict := "ok"
			if err != nil {
				verdict = "WRONG: " + err.Error()
			}
			h.res.Probes[c.key][t] = verdict
		}
	}

	// Warm-up: pools filled, code paths hot.
	warm := []struct{ target, script, path string }{
		{tGate, "get", "/api/v1/me"}, {tGate, "info", ""}, {tNginx, "get", "/api/v1/me"},
		{tUpstream, "get", "/api/v1/me"}, {tFloor, "info", ""},
	}
	progress("warming up")
	for _, w := range warm {
		if _, err := runWrk(ctx, h.scripts[w.script], base[w.target]+w.path, h.o.conns, time.Second); err != nil && ctx.Err() != nil {
			return ctx.Err()
		}
	}

	guess := 0.0
	for r := 0; r < h.o.rounds; r++ {
		for _, c := range cases {
			ts := rotate(c.targets, r)
			for _, t := range ts {
				if ctx.Err() != nil {
					return fmt.Errorf("round %d: %w", r+1, ctx.Err())
				}
				progress("round %d/%d: %s → %s", r+1, h.o.rounds, c.key, t)
				var prof <-chan string
				if h.o.profile && t == tGate && r == h.o.rounds-1 {
					prof = h.profileGate(ctx, g.admin, c.key, max(1, int(h.o.duration/time.Second)-1))
				}
				var s sample
				var err error
				if t == tRedis {
					s, err = runRedisBenchmark(ctx, h.redisAddr, c.conns, h.o.duration, guess)
					guess = s.RPS
				} else {
					s, err = runWrk(ctx, h.scripts[c.script], base[t]+c.path, c.conns, h.o.duration)
				}
				if ctx.Err() != nil {
					return fmt.Errorf("round %d: %w", r+1, ctx.Err()) // a killed run is no sample
				}
				h.record(c.key, t, s, err)
				if prof != nil {
					if note := <-prof; note != "" {
						h.res.Notes = append(h.res.Notes, note)
					}
				}
			}
		}
	}
	if m, err := proc.ReadMem(g.p.PID()); err == nil {
		h.res.Notes = append(h.res.Notes, fmt.Sprintf("sessiongate after the load rounds: RSS %s, peak %s", fmtMiB(m.RSS), fmtMiB(m.HWM)))
	}
	return nil
}

// profileGate fetches a CPU profile of secs seconds (most of one run) of
// the sessiongate whose admin listener is admin, from its /debug/pprof into
// pprof/<case>.cpu.pprof; the channel yields a note for the report ("" when
// nothing to say).
func (h *harness) profileGate(ctx context.Context, admin, caseKey string, secs int) <-chan string {
	out := make(chan string, 1)
	go func() {
		ctx, cancel := context.WithTimeout(ctx, time.Duration(secs+10)*time.Second)
		defer cancel()
		req, _ := http.NewRequestWithContext(ctx, "GET", fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", admin, secs), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- "CPU profile " + caseKey + ": " + err.Error()
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			out <- fmt.Sprintf("CPU profile %s: /debug/pprof/profile answered %d (sessiongate's admin listener does not serve pprof)", caseKey, resp.StatusCode)
			return
		}
		dir := filepath.Join(h.outDir, "pprof")
		os.MkdirAll(dir, 0o755)
		f, err := os.Create(filepath.Join(dir, caseKey+".cpu.pprof"))
		if err != nil {
			out <- "CPU profile " + caseKey + ": " + err.Error()
			return
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err != nil {
			out <- "CPU profile " + caseKey + ": " + err.Error()
			return
		}
		// Go's profiles carry their symbols: no binary needed to read them.
		out <- fmt.Sprintf("CPU profile %s: go tool pprof -top %s", caseKey, f.Name())
	}()
	return out
}

func (h *harness) record(caseKey, target string, s sample, err error) {
	if err != nil {
		if h.res.Failures[caseKey] == nil {
			h.res.Failures[caseKey] = map[string][]string{}
		}
		h.res.Failures[caseKey][target] = append(h.res.Failures[caseKey][target], err.Error())
		progress("%s → %s: %v", caseKey, target, err)
		return
	}
	if h.res.Samples[caseKey] == nil {
		h.res.Samples[caseKey] = map[string][]sample{}
	}
	h.res.Samples[caseKey][target] = append(h.res.Samples[caseKey][target], s)
}

func rotate(xs []string, n int) []string {
	out := make([]string, 0, len(xs))
	for i := range xs {
		out = append(out, xs[(i+n)%len(xs)])
	}
	return out
}

// runTransfers moves the large download and upload through sessiongate,
// nginx, and the upstream directly (the ceiling). Each sessiongate transfer
// gets a fresh process, so its peak RSS is that transfer's own.
func (h *harness) runTransfers(ctx context.Context) error {
	for _, dir := range []string{"download", "upload"} {
		for _, target := range []string{tGate, tNginx, tUpstream} {
			if ctx.Err() != nil {
				return fmt.Errorf("transfers: %w", ctx.Err())
			}
			progress("%s %s through %s", fmtSize(h.o.transferSize), dir, target)
			var r transferResult
			switch target {
			case tGate:
				g, err := h.startGate(ctx)
				if err != nil {
					return err
				}
				r = transfer(ctx, target, "http://"+g.addr, dir, h.o.transferSize, g.p.PID(), false)
				h.stopGate(g)
			case tNginx:
				r = transfer(ctx, target, "http://"+h.nginxAddr, dir, h.o.transferSize, h.nginxProc.PID(), true)
			default:
				r = transfer(ctx, target, "http://"+h.upstreamAddr, dir, h.o.transferSize, 0, false)
			}
			if r.Err != "" {
				progress("%s through %s: %s", dir, target, r.Err)
			}
			h.res.Transfer = append(h.res.Transfer, r)
		}
	}
	return nil
}

// runTunnels holds the idle WebSocket tunnels through a fresh sessiongate,
// then through nginx for comparison.
func (h *harness) runTunnels(ctx context.Context) error {
	if h.o.tunnels <= 0 {
		return nil
	}
	g, err := h.startGate(ctx)
	if err != nil {
		return err
	}
	defer h.stopGate(g)
	targets := []tunnelTarget{
		{name: tGate, addr: g.addr, pids: func() []int { return []int{g.p.PID()} }, metrics: g.admin + "/metrics"},
		{name: tNginx, addr: h.nginxAddr, pids: func() []int {
			return append([]int{h.nginxProc.PID()}, proc.Children(h.nginxProc.PID())...)
		}},
	}
	for _, t := range targets {
		if ctx.Err() != nil {
			return fmt.Errorf("tunnels: %w", ctx.Err())
		}
		progress("%d idle WebSocket tunnels through %s", h.o.tunnels, t.name)
		r := holdTunnels(ctx, t, h.o.tunnels)
		if r.Err != "" {
			progress("tunnels through %s: %s", t.name, r.Err)
		}
		h.res.Tunnels = append(h.res.Tunnels, r)
	}
	return nil
}

// tables renders what was measured.
func (h *harness) tables() []table {
	var out []table
	if cases := h.loadCases(); len(cases) > 0 && len(h.res.Samples)+len(h.res.Failures) > 0 {
		t := table{
			title: "Request rate (medians over rounds)",
			header: []string{"case", "target", "req/s", "p50 ms", "p99 ms", "non-2xx",
				"sg÷target req/s", "sg÷target p99", "goal", "answers"},
		}
		for _, c := range cases {
			gs := summarize(h.res.Samples[c.key][tGate], h.res.Failures[c.key][tGate])
			for i, target := range c.targets {
				s := summarize(h.res.Samples[c.key][target], h.res.Failures[c.key][target])
				row := []string{"", target, fmtRPS(s.RPS), fmtMS(s.P50), fmtMS(s.P99), "—", "", "", "", ""}
				if s.Runs > 0 {
					row[5] = fmt.Sprintf("%.1f%%", s.Non2xxPct)
				}
				if i == 0 {
					row[0] = c.title
				}
				if target != tGate {
					row[6] = ratio(gs.RPS, s.RPS)
					if target != tRedis {
						row[7] = ratio(gs.P99, s.P99)
					}
				}
				if target == c.goalPeer {
					row[8] = goalVerdict(gs, s, c.minRPS, c.maxP99)
				}
				row[9] = h.res.Probes[c.key][target]
				if target == tRedis {
					row[5], row[9] = "", "(Redis ceiling: one GET per request)"
				}
				if s.Runs == 0 && s.FailedRuns > 0 {
					row[9] = "RUN FAILED: " + s.LastRunFailure
				} else if s.SockErrPct > 0.1 {
					row[9] += fmt.Sprintf("; socket errors %.1f%%", s.SockErrPct)
				}
				t.rows = append(t.rows, row)
			}
		}
		t.notes = append(t.notes,
			"sg = sessiongate. Ratios: sessiongate's median over the target's median; above 1 is better for req/s, below 1 is better for p99.",
			"answers: each target's replies checked once before measuring (status and exact body); WRONG rows measure something else than the case.",
			"The mix case answers 20% non-2xx by design (10% 401, 10% 404).")
		out = append(out, t)
	}
	if len(h.res.Transfer) > 0 {
		t := table{
			title:  "Large transfers (one connection each)",
			header: []string{"direction", "size", "target", "MiB/s", "seconds", "RSS before", "peak RSS", "sg÷target MiB/s", "goal", "result"},
		}
		rate := map[string]float64{}
		for _, r := range h.res.Transfer {
			rate[r.Direction+r.Target] = r.MiBps
		}
		for _, r := range h.res.Transfer {
			row := []string{r.Direction, fmtSize(r.Bytes), r.Target, "—", fmt.Sprintf("%.1f", r.Seconds), fmtMiB(r.BaseRSS), fmtMiB(r.PeakRSS), "", "", "ok"}
			if r.MiBps > 0 {
				row[3] = fmt.Sprintf("%.0f", r.MiBps)
			}
			if r.PeakRSS > 0 {
				row[6] += " (" + r.PeakHow + ")"
			}
			if r.Target != tGate {
				row[7] = ratio(rate[r.Direction+tGate], r.MiBps)
			} else {
				row[8] = "peak RSS < 64 MiB: " + metOrMissed(r.Err == "" && r.PeakRSS > 0 && r.PeakRSS < 64<<20)
			}
			if r.Err != "" {
				row[9] = "FAILED: " + r.Err
			}
			t.rows = append(t.rows, row)
		}
		t.notes = append(t.notes, "nginx's RSS is the sum over its master and workers, sampled every 20 ms; sessiongate's peak is the kernel's VmHWM, reset before each transfer.")
		out = append(out, t)
	}
	if len(h.res.Tunnels) > 0 {
		t := table{
			title: "Idle WebSocket tunnels (handshake + one frame each way, then idle)",
			header: []string{"target", "open", "opened in", "RSS before", "RSS after", "RSS per tunnel",
				"goroutines before→after", "goroutines per tunnel", "tunnels_open gauge", "closed in", "goal", "result"},
		}
		for _, r := range h.res.Tunnels {
			row := []string{r.Target, fmt.Sprintf("%d/%d", r.Opened, r.Wanted), fmt.Sprintf("%.1fs", r.OpenSeconds),
				fmtMiB(r.RSSBefore), fmtMiB(r.RSSAfter), "—", "—", "—", "—", "—", "", "ok"}
			perTunnel := 0.0
			if r.Opened > 0 && r.RSSAfter > 0 {
				perTunnel = float64(r.RSSAfter-r.RSSBefore) / float64(r.Opened) / 1024
				row[5] = fmt.Sprintf("%.1f KiB", perTunnel)
			}
			if r.GoroutinesB >= 0 && r.GoroutinesA >= 0 {
				row[6] = fmt.Sprintf("%.0f→%.0f", r.GoroutinesB, r.GoroutinesA)
				if r.Opened > 0 {
					row[7] = fmt.Sprintf("%.2f", (r.GoroutinesA-r.GoroutinesB)/float64(r.Opened))
				}
			}
			if r.GaugeOpen >= 0 {
				row[8] = fmt.Sprintf("%.0f", r.GaugeOpen)
			}
			if r.CloseSeconds >= 0 {
				row[9] = fmt.Sprintf("%.1fs", r.CloseSeconds)
			} else if r.Opened > 0 {
				row[9] = "not within 15s"
			}
			if r.Target == tGate {
				row[10] = "< 20 KiB/tunnel: " + metOrMissed(r.Opened == r.Wanted && r.Opened > 0 && perTunnel < 20)
			}
			if r.Err != "" {
				row[11] = "FAILED: " + r.Err
			}
			t.rows = append(t.rows, row)
		}
		t.notes = append(t.notes, "RSS per tunnel = (RSS after − RSS before) ÷ tunnels; nginx's is summed over master and workers. \"closed in\": until the target's open descriptors fell back after the client closed every tunnel.")
		out = append(out, t)
	}
	if len(h.res.RCMix) > 0 {
		out = append(out, h.rcmixTable())
	}
	return out
}

// goalVerdict checks the performance ratio goals for sessiongate (g) against its
// peer (p), showing the ratio measured next to each goal.
func goalVerdict(g, p summary, minRPS, maxP99 float64) string {
	if g.RPS <= 0 || p.RPS <= 0 {
		return "—"
	}
	ok := true
	r := g.RPS / p.RPS
	parts := []string{fmt.Sprintf("req/s %.2f× (goal ≥ %.2f×)", r, minRPS)}
	if r < minRPS {
		ok = false
	}
	if maxP99 > 0 && g.P99 > 0 && p.P99 > 0 {
		q := g.P99 / p.P99
		parts = append(parts, fmt.Sprintf("p99 %.2f× (goal ≤ %.2f×)", q, maxP99))
		if q > maxP99 {
			ok = false
		}
	}
	return strings.Join(parts, ", ") + ": " + metOrMissed(ok)
}

func metOrMissed(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
