package proxy

import (
	"bufio"
	"context"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// Why sessiongate has its own upstream client instead of fasthttp.HostClient
// (measured in forward_bench_test.go): HostClient re-serializes the request
// from the parsed header, which puts Host, User-Agent, Content-Type and
// Content-Length first in canonical case and re-encodes Cookie once anything
// has read it; it offers one ReadTimeout for the header wait and the whole
// streamed body, and retries by a predicate that cannot see whether bytes
// left. Writing the client's raw header block ourselves keeps the request
// byte for byte, lets the head and a first body piece leave in one write, and
// costs fewer allocations and less time per request than HostClient on the
// same in-process upstream (see the benchmark numbers in the report).

// upstreamBufferSize is the read buffer of an upstream connection: it bounds
// the response header block (like Node's own 16 KiB default) and is the
// largest response body that arrives without a second read.
const upstreamBufferSize = h1.MaxResponseHeadBytes

// upstreamConn is one keep-alive connection to the upstream. It is used by
// one request at a time: the pool hands it out and takes it back.
type upstreamConn struct {
	conn net.Conn
	br   *bufio.Reader
	// idleSince is when the connection went back to the pool.
	idleSince time.Time
	// reused is set once the connection has carried a request: a reused
	// connection may have been closed by the upstream while idle, which
	// makes a failure before any response byte retryable.
	reused bool
	// probe checks the idle connection before each reuse.
	probe idleProbe
	// framing is how the body of the response being read is delimited.
	framing h1.Framing
	// rdl and wdl are the read and write deadlines last set on conn; every
	// deadline change goes through the methods below so they stay true.
	rdl, wdl time.Time
	// hex holds a chunk-size line being written.
	hex [24]byte
	// bufs and vec let a head and a body piece go out in one writev
	// without allocating.
	vec  [4][]byte
	bufs net.Buffers
}

// writevHead writes the non-empty pieces in one system call where the
// connection supports it (plain TCP: writev) and returns how many bytes left.
func (c *upstreamConn) writevHead(head, pre, body, post []byte) (int64, error) {
	c.vec[0], c.vec[1], c.vec[2], c.vec[3] = head, pre, body, post
	c.bufs = c.vec[:0]
	for _, v := range c.vec {
		if len(v) > 0 {
			c.bufs = append(c.bufs, v)
		}
	}
	var n int64
	var err error
	if len(c.bufs) == 1 {
		var m int
		m, err = c.conn.Write(c.bufs[0])
		n = int64(m)
	} else {
		n, err = c.bufs.WriteTo(c.conn)
	}
	c.vec = [4][]byte{}
	c.bufs = nil
	return n, err
}

// armDeadline bounds the next exchange on c by want (both directions),
// keeping the deadlines already set when they are no later than want and at
// least half of want's distance away: a busy connection then re-arms about
// twice per liveness interval instead of on every request (each re-arm reads
// the clock twice and moves two runtime timers, which showed in the profile
// of small forwarded requests). An earlier deadline is harmless where it is
// used: waitHead re-arms on a timeout that is not yet the real one, and the
// head's write is bounded by the liveness interval either way.
func (c *upstreamConn) armDeadline(now, want time.Time) {
	if c.rdl.Equal(c.wdl) && !c.rdl.After(want) && c.rdl.Sub(now) >= want.Sub(now)/2 {
		return
	}
	c.setDeadline(want)
}

func (c *upstreamConn) setDeadline(t time.Time) {
	c.rdl, c.wdl = t, t
	c.conn.SetDeadline(t)
}

func (c *upstreamConn) setReadDeadline(t time.Time) {
	c.rdl = t
	c.conn.SetReadDeadline(t)
}

func (c *upstreamConn) setWriteDeadline(t time.Time) {
	c.wdl = t
	c.conn.SetWriteDeadline(t)
}

// upstreamPool keeps keep-alive connections to one upstream address, at most
// maxConns of them open (idle or busy), the most recently used first.
type upstreamPool struct {
	dialer      *upstreamDialer
	idleTimeout time.Duration
	maxConns    int

	mu      sync.Mutex
	idle    []*upstreamConn
	open    int
	waiters []chan struct{}
	closed  bool

	stopReaper chan struct{}
	reaperDone chan struct{}

	// shed, when set (by the event loop), asks the holders of idle
	// connections outside this pool to close them; waiting counts the
	// requests waiting for a connection.
	shed    func()
	waiting atomic.Int32
}

func (p *upstreamPool) setShed(fn func()) {
	p.mu.Lock()
	p.shed = fn
	p.mu.Unlock()
}

// wanted reports requests waiting for a connection: one that goes idle
// elsewhere should be closed to make room for them instead.
func (p *upstreamPool) wanted() bool { return p.waiting.Load() > 0 }

func newUpstreamPool(dialer *upstreamDialer, idleTimeout time.Duration, maxConns int) *upstreamPool {
	p := &upstreamPool{
		dialer:      dialer,
		idleTimeout: idleTimeout,
		maxConns:    maxConns,
		stopReaper:  make(chan struct{}),
		reaperDone:  make(chan struct{}),
	}
	go p.reap()
	return p
}

// get returns an idle connection, or dials a new one if fewer than maxConns
// are open, or waits for one until deadline. fresh skips idle connections
// (a retry must not land on another stale one). now is the caller's recent
// reading of the clock, to judge how long a connection has been idle; the
// time returned is as recent, read again after a dial or a wait.
func (p *upstreamPool) get(now, deadline time.Time, fresh bool) (*upstreamConn, time.Time, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, now, exchange.ErrPoolClosed
		}
		for !fresh && len(p.idle) > 0 {
			c := p.idle[len(p.idle)-1]
			p.idle[len(p.idle)-1] = nil
			p.idle = p.idle[:len(p.idle)-1]
			// An idle connection the upstream closed, or sent bytes on
			// that no request asked for (a stray answer would answer
			// this request, another client's), is not reused: one
			// non-blocking recv tells.
			if now.Sub(c.idleSince) < p.idleTimeout && !c.probe.peerClosed(c.conn) {
				p.mu.Unlock()
				return c, now, nil
			}
			p.open--
			c.conn.Close()
		}
		if p.open < p.maxConns {
			p.open++
			p.mu.Unlock()
			c, err := p.dial(deadline)
			if err != nil {
				p.mu.Lock()
				p.open--
				p.wakeLocked()
				p.mu.Unlock()
				return nil, now, err
			}
			return c, time.Now(), nil
		}
		if fresh && len(p.idle) > 0 {
			// Full, but an idle one can make room for a fresh one.
			c := p.idle[0]
			p.idle = append(p.idle[:0], p.idle[1:]...)
			p.open--
			c.conn.Close()
			p.mu.Unlock()
			continue
		}
		w := make(chan struct{}, 1)
		p.waiters = append(p.waiters, w)
		shed := p.shed
		p.mu.Unlock()
		p.waiting.Add(1)
		if shed != nil {
			shed()
		}
		ok := p.wait(w, deadline)
		p.waiting.Add(-1)
		if !ok {
			return nil, now, exchange.ErrPoolTimeout
		}
		now = time.Now()
	}
}

// wait blocks until w is signalled or deadline passes. A waiter that gives
// up after being signalled passes the signal on, so no wake-up is lost.
func (p *upstreamPool) wait(w chan struct{}, deadline time.Time) bool {
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-w:
		return true
	case <-t.C:
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			return false
		}
	}
	// Already signalled: hand the turn to the next waiter.
	p.wakeLocked()
	return false
}

// wakeLocked signals the longest waiter, if any.
func (p *upstreamPool) wakeLocked() {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = append(p.waiters[:0], p.waiters[1:]...)
		w <- struct{}{}
	}
}

// put takes c back: idle for reuse when reusable (the exchange rule of
// that name, which the caller applied: among others, nothing is buffered
// past the response), else closed. An idle connection is probed again
// before its next use (get).
func (p *upstreamPool) put(c *upstreamConn, reusable bool) {
	c.reused = true
	p.mu.Lock()
	if reusable && !p.closed {
		c.idleSince = time.Now()
		p.idle = append(p.idle, c)
	} else {
		p.open--
		defer c.conn.Close()
	}
	p.wakeLocked()
	p.mu.Unlock()
}

// reserve counts a connection the event loop opens and keeps itself, if
// fewer than maxConns are open; release uncounts it when it closes.
func (p *upstreamPool) reserve() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || p.open >= p.maxConns {
		return false
	}
	p.open++
	return true
}

func (p *upstreamPool) release() {
	p.mu.Lock()
	p.open--
	p.wakeLocked()
	p.mu.Unlock()
}

func (p *upstreamPool) dial(deadline time.Time) (*upstreamConn, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	conn, err := p.dialer.dial(ctx)
	if err != nil {
		return nil, err
	}
	return &upstreamConn{conn: conn, br: bufio.NewReaderSize(conn, upstreamBufferSize)}, nil
}

// reap closes connections idle past idleTimeout, so the pool does not hold
// sockets the upstream has long closed (CLOSE_WAIT) when traffic is low.
func (p *upstreamPool) reap() {
	defer close(p.reaperDone)
	every := min(max(p.idleTimeout/2, 100*time.Millisecond), 10*time.Second)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-p.stopReaper:
			return
		case <-t.C:
		}
		var stale []*upstreamConn
		p.mu.Lock()
		keep := p.idle[:0]
		for _, c := range p.idle { // oldest first
			if time.Since(c.idleSince) >= p.idleTimeout {
				stale = append(stale, c)
				p.open--
			} else {
				keep = append(keep, c)
			}
		}
		clear(p.idle[len(keep):])
		p.idle = keep
		p.mu.Unlock()
		for _, c := range stale {
			c.conn.Close()
		}
	}
}

// close closes idle connections and stops the pool; busy connections are
// closed when they come back.
func (p *upstreamPool) close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.open -= len(idle)
	p.mu.Unlock()
	for _, c := range idle {
		c.conn.Close()
	}
	close(p.stopReaper)
	<-p.reaperDone
}
