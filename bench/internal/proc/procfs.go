//go:build linux

package proc

import (
	"errors"
	"os"
	"strconv"
	"strings"
)

// Mem is a process's resident memory from /proc/<pid>/status.
type Mem struct {
	RSS, HWM int64 // bytes: VmRSS now, VmHWM (peak since start or the last ResetPeak)
}

// ReadMem reads pid's VmRSS and VmHWM. A process without VmRSS (exited,
// or a kernel thread) is an error.
func ReadMem(pid int) (Mem, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return Mem{}, err
	}
	var m Mem
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

// RSS is pid's VmRSS in bytes.
func RSS(pid int) (int64, error) {
	m, err := ReadMem(pid)
	return m.RSS, err
}

// ResetPeak resets pid's VmHWM to its current RSS (proc(5): writing 5 to
// /proc/<pid>/clear_refs, Linux 4.0+), so a phase's peak is its own.
func ResetPeak(pid int) error {
	return os.WriteFile("/proc/"+strconv.Itoa(pid)+"/clear_refs", []byte("5"), 0)
}

// TreeRSS sums VmRSS over pid and its direct children (nginx's master and
// workers); a process that cannot be read counts 0.
func TreeRSS(pid int) int64 {
	var total int64
	for _, p := range append([]int{pid}, Children(pid)...) {
		if m, err := ReadMem(p); err == nil {
			total += m.RSS
		}
	}
	return total
}

// Children lists the direct children of pid by scanning /proc.
func Children(pid int) []int {
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

// FDs counts the file descriptors pid has open: the entries of
// /proc/<pid>/fd, as many as could be read when err is not nil.
func FDs(pid int) (int, error) {
	ents, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	return len(ents), err
}

// CPUModel is the "model name" of the first CPU in /proc/cpuinfo, or
// "unknown CPU".
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// userHZ is the unit of /proc/<pid>/stat's times (USER_HZ, fixed at 100 on
// Linux whatever the kernel's tick rate; proc(5)).
const userHZ = 100

// CPUSeconds is pid's user plus system CPU time so far, from fields 14 and
// 15 (utime, stime) of /proc/<pid>/stat.
func CPUSeconds(pid int) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// The command name is parenthesised and may hold spaces: count fields
	// after its closing parenthesis (field 3, state, is the first there).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc/" + strconv.Itoa(pid) + "/stat")
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0, errors.New("short /proc/" + strconv.Itoa(pid) + "/stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unreadable times in /proc/" + strconv.Itoa(pid) + "/stat")
	}
	return float64(utime+stime) / userHZ, nil
}
