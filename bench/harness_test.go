//go:build linux

package main

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseWrk(t *testing.T) {
	out := []byte("Running 2s test @ http://127.0.0.1:1/\n  1 threads and 64 connections\n" +
		"BENCH requests=20000 duration_us=2000000 p50_us=1500 p99_us=12000 connect=1 read=2 write=3 status=40 timeout=4\n")
	got, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	want := sample{RPS: 10000, P50: 1.5, P99: 12, Requests: 20000, Non2xx: 40, SockErr: 10}
	if got != want {
		t.Errorf("got %+v want %+v", got, want)
	}
	for _, bad := range []string{"no line at all\n", "BENCH requests=5 duration_us=0\n", "BENCH requests=x duration_us=1\n"} {
		if _, err := parseWrk([]byte(bad)); err == nil {
			t.Errorf("parseWrk(%q): got no error", bad)
		}
	}
}

func TestParseRedisBenchmarkCSV(t *testing.T) {
	// Verbatim redis-benchmark 7.0 --csv output.
	out := []byte(`"test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"` + "\n" +
		`"GET","102145.05","0.327","0.120","0.319","0.383","0.727","3.719"` + "\n")
	got, err := parseRedisBenchmarkCSV(out)
	if err != nil {
		t.Fatal(err)
	}
	if got.RPS != 102145.05 || got.P50 != 0.319 || got.P99 != 0.727 {
		t.Errorf("got %+v want rps 102145.05, p50 0.319, p99 0.727", got)
	}
	if _, err := parseRedisBenchmarkCSV([]byte("ERROR: connection refused\n")); err == nil {
		t.Error("got no error for output without a GET line")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(c.in); got != c.want {
			t.Errorf("median(%v): got %v want %v", c.in, got, c.want)
		}
	}
}

func TestGoalVerdict(t *testing.T) {
	for _, c := range []struct {
		g, p           summary
		minRPS, maxP99 float64
		want           string
	}{
		{summary{RPS: 110, P99: 2}, summary{RPS: 100, P99: 2}, 1, 1.2, "req/s 1.10× (goal ≥ 1.00×), p99 1.00× (goal ≤ 1.20×): met"},
		{summary{RPS: 90, P99: 2}, summary{RPS: 100, P99: 2}, 1, 1.2, "req/s 0.90× (goal ≥ 1.00×), p99 1.00× (goal ≤ 1.20×): MISSED"},
		{summary{RPS: 100, P99: 3}, summary{RPS: 100, P99: 2}, 1, 1.2, "req/s 1.00× (goal ≥ 1.00×), p99 1.50× (goal ≤ 1.20×): MISSED"},
		{summary{RPS: 95}, summary{RPS: 100}, 0.9, 0, "req/s 0.95× (goal ≥ 0.90×): met"},
		{summary{}, summary{RPS: 100}, 0.9, 0, "—"},
	} {
		if got := goalVerdict(c.g, c.p, c.minRPS, c.maxP99); got != c.want {
			t.Errorf("goalVerdict(%+v, %+v): got %q want %q", c.g, c.p, got, c.want)
		}
	}
}

// The data set must look like Rocket.Chat's and match docs/route.md and §3.
func TestDataset(t *testing.T) {
	// Meteor's Accounts._hashLoginToken("abc"): base64 of SHA-256("abc").
	if got, want := hashToken("abc"), "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="; got != want {
		t.Errorf("hashToken: got %q want %q", got, want)
	}
	if got := len(userID(9999)); got != 17 {
		t.Errorf("userID length: got %d want 17 (a Meteor id)", got)
	}
	if got := len(sessionID(9999, 2)); got != 17 {
		t.Errorf("sessionID length: got %d want 17", got)
	}
	if got := len(loginToken(9999, 1)); got != 43 {
		t.Errorf("loginToken length: got %d want 43", got)
	}
	if badToken(3, 0) == loginToken(3, 0) || badToken(3, 0) == loginToken(3, 1) {
		t.Error("badToken equals a real token")
	}
	if got, want := tokenKey(7, 1), "rc:{U0000000000000007}:token:"+hashToken(loginToken(7, 1)); got != want {
		t.Errorf("tokenKey: got %q want %q", got, want)
	}
	if got, want := sessionKey(7, 2), "rc:{U0000000000000007}:session:S0000000007000002"; got != want {
		t.Errorf("sessionKey: got %q want %q", got, want)
	}

	var doc map[string]any
	if err := json.Unmarshal([]byte(successBody(7, 2)), &doc); err != nil {
		t.Fatalf("successBody is not JSON: %v", err)
	}
	if doc["success"] != true || doc["sessionId"] != sessionID(7, 2) || doc["userId"] != userID(7) {
		t.Errorf("successBody: got success=%v sessionId=%v userId=%v", doc["success"], doc["sessionId"], doc["userId"])
	}
	if !strings.HasSuffix(successBody(7, 2), `"lastActivityAt":"2023-05-23T17:56:31.599Z","success":true}`) {
		t.Errorf("successBody: success is not the last member: %s", successBody(7, 2))
	}
}

func TestPostBody(t *testing.T) {
	if got := len(postBody); got != 16<<10 {
		t.Errorf("postBody: got %d bytes want %d", got, 16<<10)
	}
	if !json.Valid([]byte(postBody)) {
		t.Error("postBody is not JSON")
	}
	if strings.Contains(postBody, "]==]") {
		t.Error("postBody would end the Lua long string early")
	}
}

// The Lua scripts must build ids with the seeder's formats.
func TestInfoLua(t *testing.T) {
	for _, mix := range []bool{false, true} {
		s := infoLua(1234, mix)
		for _, want := range []string{
			"local users, tokens, sessions, missing = 1234, 2, 3, 999999",
			`string.format("U%016d", u)`,
			`string.format("T%010d%032d", u, math.random(0, tokens - 1))`,
			`string.format("S%010d%06d", u, math.random(0, sessions - 1))`,
			"function done(",
		} {
			if !strings.Contains(s, want) {
				t.Errorf("infoLua(mix=%v): missing %q in\n%s", mix, want, s)
			}
		}
	}
}

func TestRotate(t *testing.T) {
	got := strings.Join(rotate([]string{"a", "b", "c"}, 4), "")
	if got != "bca" {
		t.Errorf("rotate: got %q want %q", got, "bca")
	}
}

func TestTableMarkdown(t *testing.T) {
	tb := table{title: "T", header: []string{"a", "b"}, rows: [][]string{{"x|y", "1"}}, notes: []string{"n"}}
	want := "**T**\n\n| a | b |\n|---|---|\n| x\\|y | 1 |\n\n- n\n"
	if got := tb.markdown(); got != want {
		t.Errorf("markdown: got %q want %q", got, want)
	}
}
