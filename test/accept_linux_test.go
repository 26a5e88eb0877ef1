//go:build linux

package test

// Linux only: the test lowers the running process's descriptor limit with
// prlimit(2).

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// setNoFile sets the soft RLIMIT_NOFILE of process pid (its hard limit
// stays), as `prlimit --pid PID --nofile=N:` does. The Go runtime raises
// its soft limit at start, so lowering it before exec would not hold.
func setNoFile(t *testing.T, pid, soft int) {
	t.Helper()
	var old syscall.Rlimit
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_NOFILE, 0, uintptr(unsafe.Pointer(&old)), 0, 0); e != 0 {
		t.Fatalf("prlimit get: %v", e)
	}
	lim := syscall.Rlimit{Cur: uint64(soft), Max: old.Max}
	if _, _, e := syscall.RawSyscall6(syscall.SYS_PRLIMIT64, uintptr(pid), syscall.RLIMIT_NOFILE, uintptr(unsafe.Pointer(&lim)), 0, 0, 0); e != 0 {
		t.Fatalf("prlimit set: %v", e)
	}
}

// openFDs counts the descriptors process pid holds.
func openFDs(t *testing.T, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// cpuTicks is the user and system time process pid used so far, in clock
// ticks (/proc/PID/stat fields 14 and 15).
func cpuTicks(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	var u, s int
	fmt.Sscan(f[11], &u)
	fmt.Sscan(f[12], &s)
	return u + s
}

// TestAcceptOutOfDescriptors: with its descriptors used up by idle
// clients, sessiongate keeps running, logs the failing accept a bounded
// number of times, counts it, keeps answering on kept-alive connections
// (sessiongate's own route too, which the event loop hands over),
// and serves new connections again once the idle ones are gone. Both
// request paths (with the event loop on, the loop's accept; off, fasthttp's
// Serve through the retrying listener).
func TestAcceptOutOfDescriptors(t *testing.T) {
	t.Parallel()
	for _, loop := range []string{"true", "false"} {
		t.Run("event_loop="+loop, func(t *testing.T) {
			t.Parallel()
			testAcceptOutOfDescriptors(t, loop)
		})
	}
}

func testAcceptOutOfDescriptors(t *testing.T, loop string) {
	up := StartUpstream(t, func(r *Req) Answer {
		path, _, _ := strings.Cut(r.Target, "?")
		return Answer{Body: "ok " + path}
	})
	r := StartRedis(t)
	env := GateEnv(up.URL, r.URL())
	env["SESSIONGATE_PROXY_EVENT_LOOP"] = loop
	env["SESSIONGATE_LOG_ACCESS"] = "false"
	g := StartGate(t, env)

	// Kept-alive clients whose upstream connection is already open:
	// answering them needs no new descriptor.
	dialKept := func() (net.Conn, *bufio.Reader) {
		t.Helper()
		c, err := net.Dial("tcp", g.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c, bufio.NewReader(c)
	}
	get := func(c net.Conn, br *bufio.Reader, target string) (int, string) {
		t.Helper()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nX-User-Id: u\r\nX-Auth-Token: t\r\n\r\n", target)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("kept-alive connection, %s: %v", target, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp.StatusCode, string(body)
	}
	keep, kr := dialKept()
	ask := func(what string) {
		t.Helper()
		if status, body := get(keep, kr, "/"+what); status != 200 || body != "ok /"+what {
			t.Fatalf("kept-alive connection, %s: got %d %q, want 200 %q", what, status, body, "ok /"+what)
		}
	}
	ask("before")
	// A second one, for sessiongate's own route while out of
	// descriptors: with the event loop, that request is handed over to
	// the fasthttp path, which takes a descriptor for a moment.
	keep2, kr2 := dialKept()
	if status, _ := get(keep2, kr2, "/before"); status != 200 {
		t.Fatalf("second kept-alive connection: got %d, want 200", status)
	}
	// The route's Redis connection is opened now, not while out of
	// descriptors.
	warm, warmR := dialKept()
	if status, _ := get(warm, warmR, "/api/v1/sessions/info?sessionId=x"); status != 401 {
		t.Fatalf("sessions/info: got %d, want 401", status)
	}
	warm.Close()

	const headroom, idle = 8, 100
	setNoFile(t, g.Pid(), openFDs(t, g.Pid())+headroom)
	var idles []net.Conn
	defer func() {
		for _, c := range idles {
			c.Close()
		}
	}()
	for range idle {
		c, err := net.Dial("tcp", g.Addr) // completes in the listen queue
		if err != nil {
			t.Fatal(err)
		}
		idles = append(idles, c)
	}
	// Let the accepts fail for a while: long enough to spin, to log
	// thousands of lines, or to end the process.
	cpu := cpuTicks(t, g.Pid())
	time.Sleep(2 * time.Second)
	// Logged, not asserted (no timing assertions): the spin this
	// replaced used most of a core.
	t.Logf("CPU while out of descriptors: %d ticks of 1/100 s in 2 s", cpuTicks(t, g.Pid())-cpu)
	select {
	case <-g.exited:
		t.Fatalf("sessiongate exited (%v) when out of descriptors", g.exitState)
	default:
	}
	ask("during")
	if status, body := get(keep2, kr2, "/api/v1/sessions/info?sessionId=x"); status != 401 {
		t.Errorf("sessions/info on a kept-alive connection while out of descriptors: got %d %q, want 401", status, body)
	}

	for _, c := range idles {
		c.Close()
	}
	idles = nil
	// A new connection is served once the closed ones are taken off the
	// queue (each accept waits at most 1 s).
	var got string
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.DialTimeout("tcp", g.Addr, time.Second)
		if err != nil {
			got = err.Error()
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		fmt.Fprintf(c, "GET /after HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		b, _ := io.ReadAll(c)
		c.Close()
		if got = string(b); strings.HasPrefix(got, "HTTP/1.1 200") && strings.HasSuffix(got, "ok /after") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !strings.HasSuffix(got, "ok /after") {
		t.Fatalf("new connection after the idle ones closed: got %q, want 200 ok /after", got)
	}
	ask("after")

	if n := g.Metric(`sessiongate_accept_errors_total{reason="emfile"} `); n < 1 {
		t.Errorf(`sessiongate_accept_errors_total{reason="emfile"}: got %v, want > 0`, n)
	}
	logs := g.Logs()
	if n := strings.Count(logs, "accept"); n < 1 || n > 6 {
		t.Errorf("log lines about accept: got %d, want 1 to 6 (one per few seconds)", n)
	}
	if len(logs) > 64<<10 {
		t.Errorf("log volume: got %d bytes, want a bounded few", len(logs))
	}
}
