//go:build linux

package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// transferResult is one large upload or download through one target.
type transferResult struct {
	Target    string
	Direction string // "upload" or "download"
	Bytes     int64
	Seconds   float64
	MiBps     float64
	BaseRSS   int64  // before the transfer
	PeakRSS   int64  // during it (0: not measured for this target)
	PeakHow   string // "VmHWM" or "sampled"
	Err       string
}

// zeroPatternReader yields n bytes of a repeating pattern.
type zeroPatternReader struct{ left int64 }

var uploadPattern = []byte("0123456789abcdef")

func (r *zeroPatternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := 0
	for n < len(p) {
		n += copy(p[n:], uploadPattern)
	}
	r.left -= int64(n)
	return n, nil
}

// transferTimeout allows 10 s plus the size at 32 MiB/s: a proxy slower than
// that fails the case rather than the harness's time budget.
func transferTimeout(size int64) time.Duration {
	return 10*time.Second + time.Duration(float64(size)/(32<<20)*float64(time.Second))
}

// transfer moves size bytes through base in direction dir with a plain
// net/http client (one connection, no compression) and measures the rate.
// With pid > 0 the target's resident memory is sampled throughout (summed
// over pid and its children when tree is set: nginx's workers); for a
// single process the kernel's VmHWM is also reset before and read after, so
// a peak between two samples is not missed.
func transfer(ctx context.Context, target, base, dir string, size int64, pid int, tree bool) transferResult {
	res := transferResult{Target: target, Direction: dir, Bytes: size}
	ctx, cancel := context.WithTimeout(ctx, transferTimeout(size))
	defer cancel()

	var sampler *proc.Peak
	if pid > 0 {
		read := func() int64 {
			if tree {
				return proc.TreeRSS(pid)
			}
			m, _ := proc.ReadMem(pid)
			return m.RSS
		}
		res.BaseRSS = read()
		res.PeakHow = "sampled"
		if !tree && proc.ResetPeak(pid) == nil {
			res.PeakHow = "VmHWM"
		}
		sampler = proc.SamplePeak(read)
	}

	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	defer client.CloseIdleConnections()
	start := time.Now()
	var err error
	switch dir {
	case "download":
		err = download(ctx, client, base, size)
	default:
		err = upload(ctx, client, base, size)
	}
	res.Seconds = time.Since(start).Seconds()
	if sampler != nil {
		res.PeakRSS = sampler.Stop()
		if res.PeakHow == "VmHWM" {
			if m, e := proc.ReadMem(pid); e == nil && m.HWM > res.PeakRSS {
				res.PeakRSS = m.HWM
			}
		}
	}
	if err != nil {
		res.Err = err.Error()
		return res
	}
	res.MiBps = float64(size) / (1 << 20) / res.Seconds
	return res
}

func download(ctx context.Context, client *http.Client, base string, size int64) error {
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/download?bytes="+strconv.FormatInt(size, 10), nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("got status %d want 200", resp.StatusCode)
	}
	n, err := io.CopyBuffer(io.Discard, resp.Body, make([]byte, 256<<10))
	if err != nil {
		return fmt.Errorf("after %d bytes: %w", n, err)
	}
	if n != size {
		return fmt.Errorf("got %d bytes want %d", n, size)
	}
	return nil
}

func upload(ctx context.Context, client *http.Client, base string, size int64) error {
	req, err := http.NewRequestWithContext(ctx, "POST", base+"/upload", &zeroPatternReader{left: size})
	if err != nil {
		return err
	}
	req.ContentLength = size
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != 200 {
		return fmt.Errorf("got status %d want 200: %s", resp.StatusCode, clip(b, 80))
	}
	var got struct{ Received int64 }
	if err := json.Unmarshal(b, &got); err != nil || got.Received != size {
		return fmt.Errorf("upstream received %d bytes want %d", got.Received, size)
	}
	return nil
}
