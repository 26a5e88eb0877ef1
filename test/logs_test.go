package test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// logLines decodes the gate's JSON log lines; a line that is not JSON is a
// test failure (something wrote plain text into the stream).
func logLines(t *testing.T, g *Gate) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(g.Logs()), "\n") {
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Errorf("log line is not JSON: %q", line)
			continue
		}
		out = append(out, m)
	}
	return out
}

// waitLog polls the gate's log for a line for which match is true.
func waitLog(t *testing.T, g *Gate, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, m := range logLines(t, g) {
			if match(m) {
				return m
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return nil
}

// TestUnreachableUpstreamWarnsAtDefaultLevel: at log.level info, a dead
// upstream is in the log as a warning with the count and the kinds of the
// failures, not one line per request.
func TestUnreachableUpstreamWarnsAtDefaultLevel(t *testing.T) {
	t.Parallel()
	rds := StartRedis(t)
	env := GateEnv("http://127.0.0.1:"+strconv.Itoa(FreePort(t)), rds.URL())
	env["SESSIONGATE_LOG_LEVEL"] = "info"
	env["SESSIONGATE_LOG_ACCESS"] = "false"
	g := StartGate(t, env)
	const n = 20
	for range n {
		resp, err := http.Get(g.URL + "/api/info")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("got %d, want 502", resp.StatusCode)
		}
	}
	warn := waitLog(t, g, func(m map[string]any) bool { return m["msg"] == "upstream errors" })
	if warn == nil {
		t.Fatalf("no \"upstream errors\" line at the default level:\n%s", g.Logs())
	}
	if warn["level"] != "warn" {
		t.Errorf("level %v, want warn", warn["level"])
	}
	kinds, _ := warn["kinds"].(map[string]any)
	if count, _ := warn["count"].(float64); count < 1 || kinds["connect"] == nil {
		t.Errorf("got %v, want a count and the connect kind", warn)
	}
	lines := 0
	for _, m := range logLines(t, g) {
		if m["msg"] == "upstream errors" {
			lines++
		}
	}
	if lines >= n {
		t.Errorf("%d warning lines for %d failures: not rate-limited", lines, n)
	}
}

// TestRedisClientLogsAreJSON: go-redis's own messages (here: a Sentinel it
// cannot reach) come out as JSON lines of the "redis" logger, not as plain
// text in the middle of the JSON stream.
func TestRedisClientLogsAreJSON(t *testing.T) {
	t.Parallel()
	up := StartUpstreamForLogs(t)
	env := GateEnv(up, "redis://127.0.0.1:1/0")
	env["SESSIONGATE_REDIS_SENTINEL_ADDRS"] = "127.0.0.1:" + strconv.Itoa(FreePort(t))
	env["SESSIONGATE_LOG_LEVEL"] = "info"
	g := StartGate(t, env)
	resp, err := http.Get(g.AdminURL + "/readyz") // pings Redis through the Sentinel
	if err == nil {
		resp.Body.Close()
	}
	m := waitLog(t, g, func(m map[string]any) bool {
		return m["logger"] == "redis" && strings.Contains(m["msg"].(string)+" "+asString(m["message"]), "sentinel")
	})
	if m == nil {
		t.Errorf("no JSON line of the redis logger about the sentinel:\n%s", g.Logs())
	}
}

func asString(v any) string { s, _ := v.(string); return s }

// StartUpstreamForLogs is a stand-in upstream that answers 200.
func StartUpstreamForLogs(t *testing.T) string {
	t.Helper()
	return StartUpstream(t, func(*Req) Answer { return Answer{} }).URL
}

// TestSecondSignalExitsAtOnce: a second SIGTERM during the drain ends the
// process at once, with status 1, instead of waiting out shutdown.delay.
func TestSecondSignalExitsAtOnce(t *testing.T) {
	t.Parallel()
	rds := StartRedis(t)
	env := GateEnv(StartUpstreamForLogs(t), rds.URL())
	env["SESSIONGATE_SHUTDOWN_DELAY"] = "60s"
	g := StartGate(t, env)
	g.Signal(syscall.SIGTERM)
	if waitLog(t, g, func(m map[string]any) bool { return m["msg"] == "shutting down" }) == nil {
		t.Fatalf("no \"shutting down\" line after SIGTERM:\n%s", g.Logs())
	}
	g.Signal(syscall.SIGTERM)
	if code := g.Wait(15 * time.Second); code != 1 {
		t.Errorf("exit status %d, want 1", code)
	}
	if !strings.Contains(g.Logs(), "second signal") {
		t.Errorf("the log does not say why it stopped draining:\n%s", g.Logs())
	}
}

// TestReadyGaugeFollowsReadyz: sessiongate_ready is 1 while /readyz answers
// 200, so the alert rules can see readiness in /metrics.
func TestReadyGaugeFollowsReadyz(t *testing.T) {
	t.Parallel()
	rds := StartRedis(t)
	g := StartGate(t, GateEnv(StartUpstreamForLogs(t), rds.URL()))
	if got := g.Metric("sessiongate_ready "); got != 1 {
		t.Errorf("sessiongate_ready: got %v, want 1", got)
	}
}
