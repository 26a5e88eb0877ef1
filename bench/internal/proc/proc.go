//go:build linux

// Package proc runs the child processes of the load harness (go run ./bench)
// and the fault runner (go run ./bench/faults): Redis, nginx, sessiongate and
// stand-ins, each in a clean environment and its own process group, with its
// output in a log file, stopped by PID when the harness ends, is interrupted
// or fails. It also finds free loopback ports, waits for listeners and reads
// what Linux's /proc says about a process (memory, file descriptors,
// children). Linux only.
package proc

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Set owns every process a harness starts and stops them all, by PID. Its
// methods are safe for concurrent use; set the fields before the first Start.
type Set struct {
	// Dir is the folder for the logs: one <name>.log per process name.
	Dir string
	// Env is the environment every child starts with, before the env given
	// to Start. Nil means CleanEnv().
	Env []string
	// Truncate empties <name>.log at each start. False appends, so a process
	// restarted under the same name keeps one log with every run in it.
	Truncate bool

	mu    sync.Mutex
	procs []*Proc
}

// Proc is one process a Set started. Its methods are safe for concurrent use.
type Proc struct {
	name    string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{} // closed once the process has exited and been reaped
}

// CleanEnv is an environment with PATH and HOME only, plus each variable in
// keep that is set here (the Go runtime knobs, say, when the person running
// the harness set them on purpose).
func CleanEnv(keep ...string) []string {
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for _, k := range keep {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

// Start runs bin with args in the Set's environment plus env, its output in
// Dir/<name>.log. Each child gets its own process group, so that a Ctrl-C at
// the terminal reaches only the harness, which then stops the children
// itself, and so that stopping nginx's master also reaches its workers; and
// a parent-death signal, so that a harness killed with SIGKILL leaves
// nothing behind.
func (s *Set) Start(name string, env []string, bin string, args ...string) (*Proc, error) {
	logPath := filepath.Join(s.Dir, name+".log")
	flags := os.O_CREATE | os.O_WRONLY | os.O_APPEND
	if s.Truncate {
		flags = os.O_CREATE | os.O_WRONLY | os.O_TRUNC
	}
	f, err := os.OpenFile(logPath, flags, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child holds its own descriptor
	base := s.Env
	if base == nil {
		base = CleanEnv()
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(append([]string(nil), base...), env...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	p := &Proc{name: name, logPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(p.done)
	}()
	s.mu.Lock()
	s.procs = append(s.procs, p)
	s.mu.Unlock()
	return p, nil
}

// StopAll stops every process the Set started and still holds, newest
// first, each with a 5 s grace, and forgets them.
func (s *Set) StopAll() {
	s.mu.Lock()
	procs := s.procs
	s.procs = nil
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		procs[i].Stop(5 * time.Second)
	}
}

// Name is the name the process was started under.
func (p *Proc) Name() string { return p.name }

// LogPath is the file the process's output goes to.
func (p *Proc) LogPath() string { return p.logPath }

// PID is the process's ID, which is also its process group's.
func (p *Proc) PID() int { return p.cmd.Process.Pid }

// Exited reports whether the process has exited.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to the process (not its group) if it is still running.
func (p *Proc) Signal(sig syscall.Signal) {
	if !p.Exited() {
		syscall.Kill(p.PID(), sig)
	}
}

// Kill stops the process at once, as a crash would, and waits for it.
func (p *Proc) Kill() {
	if !p.Exited() {
		syscall.Kill(p.PID(), syscall.SIGCONT) // a paused process cannot die
		syscall.Kill(p.PID(), syscall.SIGKILL)
		<-p.done
	}
}

// Stop sends SIGTERM (after SIGCONT, in case it is paused), waits up to
// grace, then SIGKILLs the process group and waits for the process. Either
// way the group is killed at the end: workers (nginx's) may outlive a master
// that exited.
func (p *Proc) Stop(grace time.Duration) {
	p.Signal(syscall.SIGCONT)
	p.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(grace):
		syscall.Kill(-p.PID(), syscall.SIGKILL)
		<-p.done
	}
	syscall.Kill(-p.PID(), syscall.SIGKILL)
}

// Wait waits up to d for the process to exit and returns its exit code and
// true, or -1 and false if it is still running.
func (p *Proc) Wait(d time.Duration) (code int, exited bool) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode(), true
	case <-t.C:
		return -1, false
	}
}
