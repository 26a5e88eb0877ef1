//go:build linux

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// startUpstream builds and starts bench/cmd/upstream, the stand-in the
// mix's answers come from, and returns its address and pid.
func startUpstream(t *testing.T) (string, int) {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the stand-in upstream")
	}
	root, err := findRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "upstream")
	build := exec.Command("go", "build", "-o", bin, "./bench/cmd/upstream")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-listen", "127.0.0.1:0")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	addr, ok := strings.CutPrefix(strings.TrimSpace(line), "listening ")
	if err != nil || !ok {
		t.Fatalf("upstream said %q, %v", line, err)
	}
	return addr, cmd.Process.Pid
}

func smallMix() *harness {
	return &harness{o: options{users: 100, rcmixWS: 20, rcmixPolls: 4, rcmixStreams: 2, rcmixRate: 100, rcmixConns: 4, rcmixDuration: 2 * time.Second}}
}

// The mix against the stand-in itself: every kind of traffic flows, all of
// it checked, and nothing counts as an error.
func TestRCMixAgainstUpstream(t *testing.T) {
	addr, pid := startUpstream(t)
	h := smallMix()
	r := h.rcmixRun(context.Background(), rcmixTarget{name: "upstream", addr: addr, pids: func() []int { return []int{pid} }})
	if r.Err != "" || len(r.Errors) > 0 {
		t.Fatalf("run failed: %q, errors %v, first %v", r.Err, r.Errors, r.FirstErrors)
	}
	if r.WSOpen != 20 || r.WSSent == 0 || r.WSEchoed != r.WSSent || r.Pings == 0 {
		t.Errorf("WebSockets: open %d/20, echoed %d of %d, pings %d", r.WSOpen, r.WSEchoed, r.WSSent, r.Pings)
	}
	if r.Polls == 0 || r.StreamMsgs == 0 {
		t.Errorf("polls %d, stream messages %d: want some of each", r.Polls, r.StreamMsgs)
	}
	if r.RESTSent != 200 || r.RESTOK != r.RESTSent || r.P99 <= 0 || r.P50 > r.P99 {
		t.Errorf("REST: %d of %d answered, p50 %.3f p99 %.3f ms; want 200 of 200", r.RESTOK, r.RESTSent, r.P50, r.P99)
	}
	if r.PeakRSS <= 0 || r.EndRSS <= 0 || r.PeakRSS < r.EndRSS {
		t.Errorf("RSS peak %d end %d", r.PeakRSS, r.EndRSS)
	}
}

// A proxy that cuts every connection early: polls, streams, WebSockets and
// REST requests cut short must all count as errors.
func TestRCMixCountsCutConnections(t *testing.T) {
	up, _ := startUpstream(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", up)
			if err != nil {
				c.Close()
				continue
			}
			// Long enough for the WebSocket handshakes, shorter than a
			// poll's hold (2 s × 25/60) and a stream's gap.
			time.AfterFunc(600*time.Millisecond, func() { c.Close(); u.Close() })
			// Both copies end when the timer closes the two sockets.
			go io.Copy(u, c)
			go io.Copy(c, u)
		}
	}()
	h := smallMix()
	r := h.rcmixRun(context.Background(), rcmixTarget{name: "cutter", addr: ln.Addr().String(), pids: func() []int { return nil }})
	t.Logf("errors %v; first %v", r.Errors, r.FirstErrors)
	for _, kind := range []string{"ws closed early", "poll", "stream", "rest"} {
		if r.Errors[kind] == 0 {
			t.Errorf("no %q errors; got %v", kind, r.Errors)
		}
	}
	if r.FirstErrors["stream"] == "" || r.FirstErrors["poll"] == "" {
		t.Errorf("first errors not kept: %v", r.FirstErrors)
	}
	if p := h.problems(); len(p) != 0 {
		// problems() reads h.res, which this run did not fill: only the
		// recorded runs are judged.
		t.Errorf("problems without recorded runs: %v", p)
	}
	h.res.RCMix = append(h.res.RCMix, r)
	if p := h.problems(); len(p) == 0 {
		t.Error("-strict would pass a run full of errors")
	}
}

func TestRCMixShapes(t *testing.T) {
	if n := len(ddpFrame(1234)); n != 200 {
		t.Errorf("ddpFrame: %d bytes, want 200", n)
	}
	var frame []string
	if err := json.Unmarshal(ddpFrame(7), &frame); err != nil || len(frame) != 1 || !json.Valid([]byte(frame[0])) {
		t.Errorf("ddpFrame is not a SockJS array of one DDP JSON message: %v %q", err, ddpFrame(7))
	}
	if n := len(restPOSTBody); n != 300 || !json.Valid([]byte(restPOSTBody)) {
		t.Errorf("restPOSTBody: %d bytes, valid JSON %v; want 300 of JSON", n, json.Valid([]byte(restPOSTBody)))
	}
	p := rcmixTimings(time.Minute)
	if p.wsEvery != 10*time.Second || p.ping != 30*time.Second || p.hold != 25*time.Second || p.streamEvery != 5*time.Second {
		t.Errorf("timings at 60 s: %+v, want Rocket.Chat's", p)
	}
	if p := rcmixTimings(2 * time.Minute); p.hold != 25*time.Second {
		t.Errorf("timings at 120 s: %+v, want Rocket.Chat's", p)
	}
	if p := rcmixTimings(6 * time.Second); p.hold != 2500*time.Millisecond || p.wsEvery != time.Second {
		t.Errorf("timings at 6 s: %+v, want a tenth", p)
	}
	xs := []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	if percentile(xs, 0.5) != 5 || percentile(xs, 0.99) != 10 || percentile(nil, 0.5) != 0 {
		t.Errorf("percentile: p50 %v p99 %v", percentile(xs, 0.5), percentile(xs, 0.99))
	}
}

// The report's ratio row and goal verdict come from the medians per target.
func TestRCMixTable(t *testing.T) {
	h := smallMix()
	h.o.rounds = 1
	h.res.RCMix = []rcmixResult{
		{Target: tGate, Seconds: 10, CPU: 3, PeakRSS: 40 << 20, EndRSS: 30 << 20, RESTRate: 100, P50: 1, P99: 8, Errors: map[string]int64{"poll": 2}, FirstErrors: map[string]string{"poll": "EOF"}},
		{Target: tNginx, Seconds: 10, CPU: 2, PeakRSS: 80 << 20, EndRSS: 60 << 20, RESTRate: 100, P50: 1, P99: 4},
	}
	txt := h.rcmixTable().text()
	for _, want := range []string{
		"sessiongate ÷ nginx        1.50×                   0.50×     0.50×",
		"CPU ≤ 1.00× (1.50×), p99 ≤ 1.00× (2.00×), RSS < 1.00× (peak 0.50×, end 0.50×): MISSED",
		"sessiongate errors, poll: 2 (first: EOF)",
	} {
		if !strings.Contains(txt, want) {
			t.Errorf("missing %q in\n%s", want, txt)
		}
	}
}

// A target that refuses WebSockets fails the run at once, with the reason.
func TestRCMixGivesUpWithoutWebSockets(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	h := smallMix()
	r := h.rcmixRun(context.Background(), rcmixTarget{name: "no-ws", addr: srv.Listener.Addr().String(), pids: func() []int { return nil }})
	if !strings.Contains(r.Err, "gave up opening WebSockets") || r.Errors["ws connect"] == 0 || !strings.Contains(r.FirstErrors["ws connect"], "404") {
		t.Errorf("got Err %q, errors %v, first %v", r.Err, r.Errors, r.FirstErrors)
	}
}
