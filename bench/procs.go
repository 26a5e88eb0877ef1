package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// proc is one process the harness started. Its output goes to a log file in
// the results folder.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{}
}

// procSet owns every process the harness starts and stops them all, by PID,
// at the end, on Ctrl-C and on failure.
type procSet struct {
	mu     sync.Mutex
	procs  []*proc
	logDir string
}

// start runs bin with args and env (nil env: a clean one with PATH and
// HOME). Each child gets its own process group, so that stopping nginx's
// master also reaches its workers, and a parent-death signal, so that a
// harness killed with SIGKILL leaves nothing behind.
func (ps *procSet) start(name, bin string, args, env []string) (*proc, error) {
	f, err := os.Create(filepath.Join(ps.logDir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	if env == nil {
		env = baseEnv()
	}
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.procs = append(ps.procs, p)
	ps.mu.Unlock()
	return p, nil
}

// baseEnv is a clean environment: PATH and HOME, plus the Go runtime knobs
// if the person running the harness set them on purpose.
func baseEnv() []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, k := range []string{"GOMAXPROCS", "GOGC", "GOMEMLIMIT", "GODEBUG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits up to 5 s, then SIGKILLs the process group.
func (p *proc) stop() {
	if !p.exited() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			syscall.Kill(-p.pid(), syscall.SIGKILL)
			<-p.done
		}
	}
	// Workers (nginx) may outlive a master that exited: the group goes too.
	syscall.Kill(-p.pid(), syscall.SIGKILL)
	p.log.Close()
}

// stopAll stops every process, newest first.
func (ps *procSet) stopAll() {
	ps.mu.Lock()
	procs := ps.procs
	ps.procs = nil
	ps.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].stop()
	}
}

// waitTCP waits until addr accepts connections, p exits, or ctx ends.
func waitTCP(ctx context.Context, p *proc, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before listening on %s (see %s)", p.name, addr, p.log.Name())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not listening on %s after %v (see %s)", p.name, addr, limit, p.log.Name())
		}
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// memStatus is a process's resident memory from /proc/<pid>/status.
type memStatus struct {
	RSS, HWM int64 // bytes: VmRSS now, VmHWM (peak since start or the last reset)
}

func readMem(pid int) (memStatus, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return memStatus{}, err
	}
	var m memStatus
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			m.RSS = kb << 10
		case "VmHWM:":
			m.HWM = kb << 10
		}
	}
	if m.RSS == 0 {
		return m, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
	}
	return m, nil
}

// resetPeak resets VmHWM to the current RSS (proc(5): writing 5 to
// /proc/<pid>/clear_refs, Linux 4.0+), so a phase's peak is its own.
func resetPeak(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// treeRSS sums VmRSS over pid and its direct children (nginx's master and
// workers).
func treeRSS(pid int) int64 {
	var total int64
	if m, err := readMem(pid); err == nil {
		total += m.RSS
	}
	for _, c := range children(pid) {
		if m, err := readMem(c); err == nil {
			total += m.RSS
		}
	}
	return total
}

// children lists the direct children of pid by scanning /proc.
func children(pid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	want := strconv.Itoa(pid)
	for _, e := range ents {
		n, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised command name: state, ppid, ...
		s := string(b)
		if i := strings.LastIndexByte(s, ')'); i >= 0 {
			f := strings.Fields(s[i+1:])
			if len(f) > 1 && f[1] == want {
				out = append(out, n)
			}
		}
	}
	return out
}

// peakSampler samples a memory function every 20 ms until stopped and keeps
// the maximum: a check on VmHWM, and the only peak there is for a process
// tree.
type peakSampler struct {
	stopc chan struct{}
	done  chan struct{}
	max   int64
}

func samplePeak(read func() int64) *peakSampler {
	s := &peakSampler{stopc: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if v := read(); v > s.max {
				s.max = v
			}
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	}()
	return s
}

func (s *peakSampler) stop() int64 {
	close(s.stopc)
	<-s.done
	return s.max
}
