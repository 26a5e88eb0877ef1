//go:build linux

package proc

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func newSet(t *testing.T) *Set {
	t.Helper()
	s := &Set{Dir: t.TempDir()}
	t.Cleanup(s.StopAll)
	return s
}

func TestWaitExitCode(t *testing.T) {
	s := newSet(t)
	p, err := s.Start("three", nil, "/bin/sh", "-c", "echo out; exit 3")
	if err != nil {
		t.Fatal(err)
	}
	code, exited := p.Wait(10 * time.Second)
	if !exited || code != 3 {
		t.Fatalf("got code %d exited %v, want 3 true", code, exited)
	}
	if !p.Exited() {
		t.Fatal("got Exited false after Wait, want true")
	}
	b, err := os.ReadFile(p.LogPath())
	if err != nil || string(b) != "out\n" {
		t.Fatalf("got log %q (%v), want %q", b, err, "out\n")
	}
}

func TestLogAppendOrTruncate(t *testing.T) {
	for _, tc := range []struct {
		truncate bool
		want     string
	}{
		{false, "run\nrun\n"},
		{true, "run\n"},
	} {
		s := newSet(t)
		s.Truncate = tc.truncate
		for range 2 {
			p, err := s.Start("twice", nil, "/bin/sh", "-c", "echo run")
			if err != nil {
				t.Fatal(err)
			}
			p.Wait(10 * time.Second)
		}
		b, _ := os.ReadFile(filepath.Join(s.Dir, "twice.log"))
		if string(b) != tc.want {
			t.Errorf("Truncate %v: got log %q, want %q", tc.truncate, b, tc.want)
		}
	}
}

func TestEnv(t *testing.T) {
	t.Setenv("PROC_TEST_KEEP", "kept")
	t.Setenv("PROC_TEST_DROP", "dropped")
	s := newSet(t)
	s.Env = CleanEnv("PROC_TEST_KEEP", "PROC_TEST_UNSET")
	p, err := s.Start("env", []string{"EXTRA=1"}, "/usr/bin/env")
	if err != nil {
		t.Fatal(err)
	}
	p.Wait(10 * time.Second)
	b, _ := os.ReadFile(p.LogPath())
	got := strings.Fields(string(b))
	want := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PROC_TEST_KEEP=kept", "EXTRA=1"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got env %q, want %q", got, want)
	}
}

// TestStopGroup checks that Stop reaches a child that ignores SIGTERM (after
// the grace) and the leader's own children.
func TestStopGroup(t *testing.T) {
	s := newSet(t)
	p, err := s.Start("group", nil, "/bin/sh", "-c", "trap '' TERM; sleep 60 & sleep 60 & wait")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(Children(p.PID())) < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	kids := Children(p.PID())
	if len(kids) != 2 {
		t.Fatalf("got %d children, want 2", len(kids))
	}
	if TreeRSS(p.PID()) <= 0 {
		t.Error("got TreeRSS <= 0, want the tree's memory")
	}
	p.Stop(100 * time.Millisecond)
	if !p.Exited() {
		t.Fatal("got Exited false after Stop, want true")
	}
	for _, k := range kids {
		// SIGKILL is sent, not yet delivered, when Stop returns.
		for end := time.Now().Add(2 * time.Second); running(k) && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
		if running(k) {
			t.Errorf("child %d still running after Stop", k)
		}
	}
}

// running reports whether pid exists and is not a zombie waiting for its
// new parent to reap it.
func running(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(f) > 0 && f[0] != "Z"
}

func TestKillAndSignal(t *testing.T) {
	s := newSet(t)
	p, err := s.Start("sleeper", nil, "/bin/sh", "-c", "sleep 60")
	if err != nil {
		t.Fatal(err)
	}
	p.Signal(syscall.SIGSTOP)
	p.Kill()
	if code, exited := p.Wait(time.Second); !exited || code != -1 {
		t.Fatalf("got code %d exited %v, want -1 (killed) true", code, exited)
	}
}

func TestWaitTCP(t *testing.T) {
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := WaitTCP(ctx, nil, addr, 50*time.Millisecond); err == nil {
		t.Fatal("got nil error with nothing listening, want one")
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := WaitTCP(ctx, nil, addr, time.Second); err != nil {
		t.Fatalf("got %v with a listener, want nil", err)
	}

	s := newSet(t)
	p, err := s.Start("quitter", nil, "/bin/sh", "-c", "exit 0")
	if err != nil {
		t.Fatal(err)
	}
	other, _ := FreeAddr()
	err = WaitTCP(ctx, p, other, 10*time.Second)
	if err == nil || !strings.Contains(err.Error(), "exited before listening") {
		t.Fatalf("got %v, want an exited-before-listening error", err)
	}
}

func TestReadSelf(t *testing.T) {
	m, err := ReadMem(os.Getpid())
	if err != nil || m.RSS <= 0 || m.HWM < m.RSS {
		t.Fatalf("got %+v, %v; want RSS > 0 and HWM >= RSS", m, err)
	}
	if n, err := FDs(os.Getpid()); err != nil || n < 3 {
		t.Fatalf("got %d fds, %v; want at least stdin, stdout, stderr", n, err)
	}
	peak := SamplePeak(func() int64 { return 42 })
	if got := peak.Stop(); got != 42 {
		t.Fatalf("got peak %d, want 42", got)
	}
}

// TestCPUSeconds burns CPU in this process and expects its counted time to
// grow by about as much (a lower bound only: the machine may be busy).
func TestCPUSeconds(t *testing.T) {
	before, err := CPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	x := 0
	for start := time.Now(); time.Since(start) < 300*time.Millisecond; {
		x++
	}
	after, err := CPUSeconds(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 0.01 {
		t.Errorf("CPU time grew %.2fs over a 300 ms busy loop (%d turns); want some", after-before, x)
	}
	if _, err := CPUSeconds(1 << 30); err == nil {
		t.Error("no error for a pid that does not exist")
	}
}
