//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// tunnelResult is the idle-WebSocket case for one target.
type tunnelResult struct {
	Target       string
	Wanted       int
	Opened       int
	Failed       int
	OpenSeconds  float64
	RSSBefore    int64
	RSSAfter     int64
	GoroutinesB  float64 // -1: not available (not a Go target, or no metrics)
	GoroutinesA  float64
	GaugeOpen    float64 // sessiongate_websocket_tunnels_open with all open (-1: n/a)
	FDsBefore    int
	FDsAfter     int
	CloseSeconds float64 // until the target's open descriptors went back; -1: not within 15 s
	Err          string
}

// The client side of RFC 6455: a fixed key (§4.1 allows any 16 random
// bytes; the sample key of §1.3) and its accept value.
const (
	wsKey    = "dGhlIHNhbXBsZSBub25jZQ=="
	wsAccept = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
)

// wsFrameHi is a final, masked text frame "hi" (clients always mask,
// RFC 6455 §5.3); the stand-in upstream answers it with "ok".
var wsFrameHi = func() []byte {
	mask := [4]byte{0x12, 0x34, 0x56, 0x78}
	return []byte{0x81, 0x80 | 2, mask[0], mask[1], mask[2], mask[3], 'h' ^ mask[0], 'i' ^ mask[1]}
}()

// openTunnel dials addr, completes a WebSocket handshake on a DDP path and
// sends one frame and reads the upstream's answer, so the tunnel is known
// to carry bytes both ways. Raw sockets keep the client's own memory small
// (no bufio per connection): 10 000 of them live in this process.
func openTunnel(addr string, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(timeout))
	req := "GET /websocket HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + wsKey + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(c, req); err != nil {
		c.Close()
		return nil, err
	}
	// The 101 has no body and the upstream says nothing until our frame,
	// so reading up to the blank line cannot swallow tunnel bytes.
	var buf [1024]byte
	n := 0
	for !bytes.Contains(buf[:n], []byte("\r\n\r\n")) {
		if n == len(buf) {
			c.Close()
			return nil, errors.New("handshake answer over 1 KiB")
		}
		m, err := c.Read(buf[n:])
		n += m
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("handshake: %w (got %q)", err, clip(buf[:n], 60))
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(buf[:n])), nil)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("handshake: %w", err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != wsAccept {
		c.Close()
		return nil, fmt.Errorf("handshake: got %d (accept %q) want 101", resp.StatusCode, resp.Header.Get("Sec-WebSocket-Accept"))
	}
	if _, err := c.Write(wsFrameHi); err != nil {
		c.Close()
		return nil, err
	}
	var ok [4]byte
	if _, err := io.ReadFull(c, ok[:]); err != nil || ok != [4]byte{0x81, 0x02, 'o', 'k'} {
		c.Close()
		return nil, fmt.Errorf("no echo through the tunnel: %v %q", err, ok[:])
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// tunnelTarget says how to observe one target during the case.
type tunnelTarget struct {
	name    string
	addr    string
	pids    func() []int // the target's processes (nginx: master and workers)
	metrics string       // admin /metrics URL; "" for nginx
}

func (t tunnelTarget) rss() int64 {
	var total int64
	for _, pid := range t.pids() {
		if m, err := proc.ReadMem(pid); err == nil {
			total += m.RSS
		}
	}
	return total
}

// fds counts the target's open file descriptors: two per tunnel (client and
// upstream side), so their return to the baseline shows the tunnels closed.
func (t tunnelTarget) fds() int {
	total := 0
	for _, pid := range t.pids() {
		n, _ := proc.FDs(pid)
		total += n
	}
	return total
}

// holdTunnels opens n tunnels through t with 64 dialers, measures memory
// and goroutines once they are idle, closes them and waits (bounded) for the
// target to notice.
func holdTunnels(ctx context.Context, t tunnelTarget, n int) tunnelResult {
	res := tunnelResult{Target: t.name, Wanted: n, GoroutinesB: -1, GoroutinesA: -1, GaugeOpen: -1, CloseSeconds: -1}
	// One tunnel first: a target that cannot tunnel at all fails fast
	// instead of timing out 10 000 times.
	first, err := openTunnel(t.addr, 5*time.Second)
	if err != nil {
		res.Err = "first tunnel: " + err.Error()
		return res
	}
	first.Close()
	if err := proc.Sleep(ctx, 500*time.Millisecond); err != nil {
		res.Err = err.Error()
		return res
	}

	res.RSSBefore = t.rss()
	res.FDsBefore = t.fds()
	if t.metrics != "" {
		res.GoroutinesB = metricValue(t.metrics, "go_goroutines ")
	}

	conns := make([]net.Conn, n)
	var next, failed atomic.Int64
	var firstErr atomic.Value
	start := time.Now()
	var wg sync.WaitGroup
	for w := 0; w < 64; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(n) {
					return
				}
				c, err := openTunnel(t.addr, 10*time.Second)
				if err != nil {
					firstErr.CompareAndSwap(nil, err.Error())
					// Give up once failures pass 1 %: the numbers would not
					// mean anything.
					if failed.Add(1) > int64(n/100+1) {
						next.Store(int64(n))
					}
					continue
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	res.OpenSeconds = time.Since(start).Seconds()
	for _, c := range conns {
		if c != nil {
			res.Opened++
		}
	}
	res.Failed = int(failed.Load())
	if e, _ := firstErr.Load().(string); e != "" {
		res.Err = fmt.Sprintf("%d failed, first: %s", res.Failed, e)
	}

	// Idle for a moment: lazy allocations done, nothing in flight.
	proc.Sleep(ctx, time.Second)
	res.RSSAfter = t.rss()
	res.FDsAfter = t.fds()
	if t.metrics != "" {
		res.GoroutinesA = metricValue(t.metrics, "go_goroutines ")
		res.GaugeOpen = metricValue(t.metrics, "sessiongate_websocket_tunnels_open ")
	}

	closeStart := time.Now()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if t.fds() <= res.FDsBefore+2 {
			res.CloseSeconds = time.Since(closeStart).Seconds()
			break
		}
		proc.Sleep(ctx, 50*time.Millisecond)
	}
	return res
}

// metricValue is the first sample on the Prometheus text page whose line
// starts with prefix, or -1.
func metricValue(url, prefix string) float64 {
	resp, err := probeClient.Get(url)
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, prefix) {
			f, err := strconv.ParseFloat(strings.TrimSpace(line[len(prefix):]), 64)
			if err != nil {
				return -1
			}
			return f
		}
	}
	return -1
}
