//go:build linux

package main

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// sysCounts is what perf(1) counted for a target's processes over a window:
// the system calls it made, the epoll_wait calls among them, and its
// context switches. Beside the CPU time, these say where a difference
// comes from, and they vary far less from run to run on a shared machine.
type sysCounts struct {
	Seconds     float64
	Syscalls    int64
	EpollWaits  int64
	CtxSwitches int64
}

// sysCountEvents are counted with perf stat; epoll_wait is made as
// epoll_pwait by Go and as epoll_wait by nginx.
var sysCountEvents = []string{
	"raw_syscalls:sys_enter",
	"syscalls:sys_enter_epoll_wait",
	"syscalls:sys_enter_epoll_pwait",
	"context-switches",
}

// countSyscalls counts the system calls of pids (all their threads) for d
// with perf stat. The channel yields nil when perf is missing or not
// allowed to trace (kernel.perf_event_paranoid, no tracefs): the counts are
// then left out of the report, never guessed.
func countSyscalls(ctx context.Context, pids []int, d time.Duration) <-chan *sysCounts {
	out := make(chan *sysCounts, 1)
	perf, err := exec.LookPath("perf")
	if err != nil || len(pids) == 0 || d < time.Second {
		out <- nil
		return out
	}
	ps := make([]string, len(pids))
	for i, p := range pids {
		ps[i] = strconv.Itoa(p)
	}
	secs := int(d / time.Second)
	args := []string{"stat", "-x", ";", "-e", strings.Join(sysCountEvents, ","), "-p", strings.Join(ps, ","), "--", "sleep", strconv.Itoa(secs)}
	go func() {
		cmd := exec.CommandContext(ctx, perf, args...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			progress("perf stat failed, system calls not counted: %v: %s", err, clip(stderr.Bytes(), 200))
			out <- nil
			return
		}
		c, err := parsePerfStat(stderr.Bytes())
		if err != nil {
			progress("perf stat: %v", err)
			out <- nil
			return
		}
		c.Seconds = float64(secs)
		out <- c
	}()
	return out
}

// parsePerfStat reads perf stat -x ';' output: value;unit;event;...
func parsePerfStat(b []byte) (*sysCounts, error) {
	var c sysCounts
	seen := 0
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ";")
		if len(f) < 3 {
			continue
		}
		v, err := strconv.ParseInt(strings.TrimSpace(f[0]), 10, 64)
		if err != nil {
			continue // <not supported>, <not counted>
		}
		switch f[2] {
		case "raw_syscalls:sys_enter":
			c.Syscalls = v
		case "syscalls:sys_enter_epoll_wait", "syscalls:sys_enter_epoll_pwait":
			c.EpollWaits += v
		case "context-switches":
			c.CtxSwitches = v
		default:
			continue
		}
		seen++
	}
	if seen < len(sysCountEvents) {
		return nil, fmt.Errorf("counted %d of the %d events (%s)", seen, len(sysCountEvents), clip(b, 200))
	}
	return &c, nil
}
