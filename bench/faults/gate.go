//go:build linux

package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// gate is a running sessiongate child.
type gate struct {
	p        *proc.Proc
	addr     string // client listener, 127.0.0.1:port
	adminURL string
}

// gateEnv is the configuration every scenario starts from: loopback
// listeners on free ports, production-like logging (info, no access log:
// the load would write gigabytes), and timeouts short enough that a fault
// shows within a scenario. Scenarios add or override keys.
func gateEnv(upstreamURL, redisURL string) map[string]string {
	return map[string]string{
		"SESSIONGATE_LISTEN":                           "127.0.0.1:0",
		"SESSIONGATE_ADMIN_LISTEN":                     "127.0.0.1:0",
		"SESSIONGATE_UPSTREAM_URL":                     upstreamURL,
		"SESSIONGATE_REDIS_URL":                        redisURL,
		"SESSIONGATE_LOG_LEVEL":                        "info",
		"SESSIONGATE_LOG_ACCESS":                       "false",
		"SESSIONGATE_UPSTREAM_RESPONSE_HEADER_TIMEOUT": "2s",
		"SESSIONGATE_SHUTDOWN_DELAY":                   "0s",
		"SESSIONGATE_SHUTDOWN_TIMEOUT":                 "10s",
	}
}

// envSummary renders the settings that differ from the defaults.
func envSummary(env map[string]string) string {
	var keys []string
	for k := range env {
		switch k {
		case "SESSIONGATE_LISTEN", "SESSIONGATE_ADMIN_LISTEN", "SESSIONGATE_UPSTREAM_URL", "SESSIONGATE_REDIS_URL":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		name := strings.ToLower(strings.TrimPrefix(k, "SESSIONGATE_"))
		name = strings.Replace(name, "_", ".", 1)
		fmt.Fprintf(&b, "`%s=%s`", name, env[k])
	}
	return b.String()
}

// startGate runs the binary and waits for its "serving" line and /readyz.
func startGate(ps *proc.Set, bin, name string, env map[string]string) (*gate, error) {
	var kv []string
	for k, v := range env {
		kv = append(kv, k+"="+v)
	}
	p, err := ps.Start(name, kv, bin)
	if err != nil {
		return nil, err
	}
	g := &gate{p: p}
	deadline := time.Now().Add(15 * time.Second)
	for g.addr == "" {
		if f, err := os.Open(p.LogPath()); err == nil {
			sc := bufio.NewScanner(f)
			sc.Buffer(make([]byte, 64<<10), 1<<20)
			for sc.Scan() {
				var m struct{ Msg, Listen, Admin string }
				if json.Unmarshal(sc.Bytes(), &m) == nil && m.Msg == "serving" {
					g.addr, g.adminURL = m.Listen, "http://"+m.Admin
				}
			}
			f.Close()
		}
		if p.Exited() {
			return nil, fmt.Errorf("sessiongate exited before serving (see %s)", p.LogPath())
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sessiongate not serving after 15 s (see %s)", p.LogPath())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for g.ready() != 200 {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("sessiongate not ready after 15 s (see %s)", p.LogPath())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return g, nil
}

var adminClient = &http.Client{Timeout: 3 * time.Second}

// ready returns /readyz's status, or 0 when it cannot be reached.
func (g *gate) ready() int {
	resp, err := adminClient.Get(g.adminURL + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// metrics returns every sample of /metrics by its name and labels as
// written (e.g. `sessiongate_sessions_info_total{outcome="ok"}`).
func (g *gate) metrics() map[string]float64 {
	out := map[string]float64{}
	resp, err := adminClient.Get(g.adminURL + "/metrics")
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	return out
}

// usage is what a process holds at one moment.
type usage struct {
	RSS        int64 // bytes, VmRSS
	FDs        int   // entries in /proc/<pid>/fd
	Goroutines int   // go_goroutines from /metrics; -1 when unknown
}

// usage samples RSS, open fds and goroutines.
func (g *gate) usage() usage {
	u := usage{Goroutines: -1}
	u.RSS, _ = proc.RSS(g.p.PID())
	u.FDs, _ = proc.FDs(g.p.PID())
	if v, ok := g.metrics()["go_goroutines"]; ok {
		u.Goroutines = int(v)
	}
	return u
}

// metricDelta returns after−before for every sample whose name starts with
// prefix, keyed by its labels, skipping zeros.
func metricDelta(before, after map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range after {
		if !strings.HasPrefix(k, prefix) {
			continue
		}
		if d := v - before[k]; d != 0 {
			out[strings.TrimPrefix(k, prefix)] = d
		}
	}
	return out
}
