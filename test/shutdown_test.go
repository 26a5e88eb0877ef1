package test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGracefulShutdown (docs/operations.md): on SIGTERM /readyz turns 503 at
// once, serving continues for shutdown.delay, then the listener closes and
// in-flight requests — a slow upload, a slow answer — finish within
// shutdown.timeout, and the process exits 0. No in-flight request is cut.
func TestGracefulShutdown(t *testing.T) {
	t.Parallel()
	const pieces, piece = 30, 64 << 10
	up := StartUpstream(t, func(r *Req) Answer {
		a := Answer{Body: strconv.Itoa(len(r.Body))}
		if path, _, _ := strings.Cut(r.Target, "?"); path == "/slow" {
			a.Delay = 2500 * time.Millisecond
		}
		return a
	})
	g := fwdGate(t, up.URL, map[string]string{
		"SESSIONGATE_SHUTDOWN_DELAY":   "1s",
		"SESSIONGATE_SHUTDOWN_TIMEOUT": "10s",
	})

	// A slow upload: 30 pieces of 64 KiB, one every 100 ms (3 s in all).
	pr, pw := io.Pipe()
	go func() {
		buf := make([]byte, piece)
		for range pieces {
			if _, err := pw.Write(buf); err != nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		pw.Close()
	}()
	upload := make(chan string, 1)
	go func() {
		resp, err := http.Post(g.URL+"/upload", "application/octet-stream", pr)
		if err != nil {
			upload <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		upload <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	// A slow answer: the upstream takes 2.5 s.
	slow := make(chan string, 1)
	go func() {
		resp, err := http.Get(g.URL + "/slow")
		if err != nil {
			slow <- "error: " + err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- fmt.Sprintf("%d %s", resp.StatusCode, b)
	}()
	waitUntil(t, 5*time.Second, "both requests in flight at the upstream", func() bool { return up.Heads() >= 2 })

	g.Signal(syscall.SIGTERM)
	signalled := time.Now()
	waitUntil(t, 500*time.Millisecond, "/readyz 503", func() bool {
		resp, err := http.Get(g.AdminURL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 503
	})
	// Within shutdown.delay, new connections are still served.
	nc := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := nc.Get(g.URL + "/during-delay")
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("request during shutdown.delay: got %v %v, want 200", resp, err)
	}
	if resp != nil {
		resp.Body.Close()
	}
	if d := time.Since(signalled); d > time.Second {
		t.Logf("note: the request during the delay finished %v after SIGTERM", d)
	}
	// After the delay, the listener is closed.
	time.Sleep(time.Until(signalled.Add(1500 * time.Millisecond)))
	if c, err := net.DialTimeout("tcp", g.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("a new connection was accepted after shutdown.delay")
	}

	if got, want := <-upload, fmt.Sprintf("200 %d", pieces*piece); got != want {
		t.Errorf("in-flight upload: got %q, want %q", got, want)
	}
	if got := <-slow; got != "200 0" {
		t.Errorf("in-flight slow answer: got %q, want \"200 0\"", got)
	}
	if code := g.Wait(15 * time.Second); code != 0 {
		t.Errorf("exit code: got %d, want 0", code)
	}
	if !strings.Contains(g.Logs(), `"msg":"stopped"`) {
		t.Errorf("no \"stopped\" log line:\n%s", g.Logs())
	}
}
