//go:build linux

package main

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParsePerfStat(t *testing.T) {
	// perf 6.1's output for a redis-server, as -x ';' prints it.
	out := "40;;raw_syscalls:sys_enter;2024537;100.00;;\n" +
		"10;;syscalls:sys_enter_epoll_wait;2024537;100.00;;\n" +
		"3;;syscalls:sys_enter_epoll_pwait;2024537;100.00;;\n" +
		"12;;context-switches;2024537;100.00;;\n"
	c, err := parsePerfStat([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	if c.Syscalls != 40 || c.EpollWaits != 13 || c.CtxSwitches != 12 {
		t.Errorf("parsed %+v, want 40 system calls, 13 epoll waits, 12 context switches", *c)
	}

	// An event perf could not count leaves the counts out, not zero.
	partial := strings.Replace(out, "40;;raw_syscalls", "<not supported>;;raw_syscalls", 1)
	if c, err := parsePerfStat([]byte(partial)); err == nil {
		t.Errorf("an uncounted event gave %+v, want an error", *c)
	}
}

// TestCountSyscallsCountsThisProcess counts this test's own system calls
// while it makes a known number of them.
func TestCountSyscallsCountsThisProcess(t *testing.T) {
	if _, err := exec.LookPath("perf"); err != nil {
		t.Skip("perf is not installed: the harness leaves system call counts out")
	}
	if testing.Short() {
		t.Skip("takes 2 s")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Calls are made all through the window, so perf's late start (it
	// attaches after it starts) leaves most of them counted.
	ch := countSyscalls(ctx, []int{os.Getpid()}, 2*time.Second)
	made := 0
	var c *sysCounts
	for done := false; !done; {
		for range 1000 {
			syscall.Getppid()
		}
		made += 1000
		select {
		case c = <-ch:
			done = true
		default:
		}
	}
	if c == nil {
		t.Skip("perf could not count here (see the harness's progress output); the harness leaves the counts out")
	}
	if c.Syscalls < int64(made/2) || c.Syscalls > int64(made)*2 {
		t.Errorf("perf counted %d system calls while this test made %d", c.Syscalls, made)
	}
	t.Logf("made %d getppid calls, perf counted %d system calls", made, c.Syscalls)
}
