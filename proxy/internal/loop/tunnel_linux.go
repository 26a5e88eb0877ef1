//go:build linux

package loop

import (
	"net"
	"unsafe"

	"golang.org/x/sys/unix"
)

// WebSocket tunnels on the loops. The proxy makes a tunnel's handshake on
// the fasthttp path (the client connection was handed over for it) and
// then joins the two sockets here: both go into a loop's epoll set, and
// the loop copies whatever one end sends to the other, as it relays
// response bodies. A tunnel then costs its two descriptors and one small
// struct: no goroutine, no buffer while idle, and a message costs one read
// and one write, where a goroutine per direction costs a wake-up, a peek,
// a read and a write (bench/README.md, rcmix).
//
// Bytes are never parsed. When one end cannot take more, the loop keeps
// what it could not write (at most one read's worth) and stops reading the
// other end until it can: the sender then meets TCP's own backpressure, as
// with a blocking copy. An end is read only when all it sent before was
// written, so when it closes or breaks nothing of it is lost, and both
// are closed: a WebSocket has its own close handshake, so a half-closed
// tunnel has nothing left to carry.

// tunnelReadSize is the most a tunnel moves per read.
const tunnelReadSize = 32 << 10

// tunnelReadsPerTurn bounds the reads one tunnel end gets per loop turn: a
// peer sending as fast as it can gets its next share after the other
// connections had theirs.
const tunnelReadsPerTurn = 8

// Tunnel is a WebSocket tunnel joined on a loop.
type Tunnel struct {
	l *evLoop
	t *evTunnel
}

// Close closes both connections of the tunnel, at once; done (see Join)
// runs on the loop. It is safe for concurrent use and does nothing once
// the tunnel has ended.
func (t *Tunnel) Close() { t.l.post(t.t.close) }

// Join moves the tunnel between client and upstream onto the loop with
// the fewest tunnels. Both must be connected TCP sockets with nothing read
// and buffered in front of them (the caller has relayed what was). On
// success the loop works on duplicates of both sockets and Join closes the
// two connections it was given; done is called once, on the loop, with the
// bytes carried to the upstream and to the client, when the tunnel ends:
// an end closed or broke, Close, or Shutdown ran out of time. On error the
// caller keeps both connections, unchanged.
func (e *Engine) Join(client, upstream *net.TCPConn, done func(up, down int64)) (*Tunnel, error) {
	cfd, err := dupConn(client)
	if err != nil {
		return nil, err
	}
	ufd, err := dupConn(upstream)
	if err != nil {
		unix.Close(cfd)
		return nil, err
	}
	l := e.loops[0]
	for _, x := range e.loops[1:] {
		if x.tunnelCount.Load() < l.tunnelCount.Load() {
			l = x
		}
	}
	l.tunnelCount.Add(1)
	t := &evTunnel{l: l, done: done}
	t.ends[0] = tunnelEnd{t: t, fd: cfd}
	t.ends[1] = tunnelEnd{t: t, fd: ufd}
	if !l.post(t.start) {
		l.tunnelCount.Add(-1)
		unix.Close(cfd)
		unix.Close(ufd)
		return nil, ErrNotJoinable
	}
	client.Close()
	upstream.Close()
	return &Tunnel{l: l, t: t}, nil
}

// Tunnels is how many tunnels the loops carry, or are about to.
func (e *Engine) Tunnels() int64 {
	var n int64
	for _, l := range e.loops {
		n += l.tunnelCount.Load()
	}
	return n
}

// dupConn returns a non-blocking duplicate of c's socket.
func dupConn(c *net.TCPConn) (int, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	cerr := rc.Control(func(s uintptr) {
		fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0)
	})
	if cerr != nil {
		return -1, cerr
	}
	if err != nil {
		return -1, err
	}
	// The duplicate shares the socket's file status flags, non-blocking
	// in Go; set it anyway, the loop must never block.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// evTunnel is a tunnel in a loop: ends[0] is the client, ends[1] the
// upstream.
type evTunnel struct {
	l    *evLoop
	ends [2]tunnelEnd
	idx  int // in l.tunnels
	done func(up, down int64)
	// queued: in l.again, for an end that still had bytes when its
	// share of the turn ran out.
	queued bool
}

// tunnelEnd is one socket of a tunnel.
type tunnelEnd struct {
	t  *evTunnel
	fd int
	readiness
	// pending was read from the other end and is not written to this one
	// yet; while it is not empty the other end is not read.
	pending []byte
	written int64 // bytes written to this end
}

func (e *tunnelEnd) event(ev uint32) {
	e.note(ev)
	e.t.pump()
}

// start registers the tunnel's sockets on its loop.
func (t *evTunnel) start() {
	l := t.l
	if l.dead {
		t.closeFDs()
		l.tunnelCount.Add(-1)
		t.done(0, 0)
		return
	}
	t.idx = len(l.tunnels)
	l.tunnels = append(l.tunnels, t)
	for i := range t.ends {
		if err := l.register(t.ends[i].fd, &t.ends[i]); err != nil {
			t.close()
			return
		}
	}
	// Bytes may have arrived before the sockets were in the epoll set:
	// edge-triggered epoll reports a socket that is readable when it is
	// added, and the first turn reads it.
}

// pump moves bytes both ways until the tunnel waits for the network.
func (t *evTunnel) pump() {
	if t.ends[0].fd < 0 {
		return
	}
	more := false
	for i := range t.ends {
		open, again := t.copy(&t.ends[i], &t.ends[1-i])
		if !open {
			t.close()
			return
		}
		more = more || again
	}
	if more && !t.queued {
		t.queued = true
		t.l.again = append(t.l.again, t)
	}
}

// copy writes dst's pending bytes, then reads src and writes what came to
// dst, until src or dst would block or src's share of the turn is used.
// It reports whether the tunnel stays open, and whether src may still have
// bytes (its share ran out).
func (t *evTunnel) copy(src, dst *tunnelEnd) (open, more bool) {
	if len(dst.pending) > 0 {
		if !dst.flush() {
			return false, false
		}
		if len(dst.pending) > 0 {
			return true, false
		}
	}
	buf := t.l.tunnelBuffer()
	for range tunnelReadsPerTurn {
		if !src.readable {
			return true, false
		}
		n, err := rawRead(src.fd, buf)
		switch {
		case n > 0:
			if n < len(buf) && !src.hup {
				src.readable = false // as in evClient.fill
			}
			if !dst.write(buf[:n]) {
				return false, false
			}
			if len(dst.pending) > 0 {
				return true, false
			}
			continue
		case err == unix.EAGAIN:
			src.readable = false
			return true, false
		case err == unix.EINTR:
			continue
		}
		// The end of src's input, or a broken connection. Nothing
		// read from src waits for dst (src is read only when nothing
		// does), so the tunnel closes now.
		return false, false
	}
	return true, src.readable
}

// write writes p to the end, keeping what the socket does not take in
// pending; false when the connection broke.
func (e *tunnelEnd) write(p []byte) bool {
	n, ok := e.send(p)
	if n < len(p) {
		e.pending = append(e.pending[:0], p[n:]...)
	}
	return ok
}

// flush writes what is pending; false when the connection broke.
func (e *tunnelEnd) flush() bool {
	n, ok := e.send(e.pending)
	if e.pending = e.pending[n:]; len(e.pending) == 0 {
		e.pending = nil
	}
	return ok
}

// send makes one write of p when the socket is writable and returns how
// much it took; false when the connection broke. A socket that took less
// than p is not writable until epoll says so again.
func (e *tunnelEnd) send(p []byte) (int, bool) {
	if !e.writable {
		return 0, true
	}
	n, err := rawWrite(e.fd, p)
	switch {
	case err == unix.EAGAIN || err == unix.EINTR:
		n = 0
	case err != nil:
		return 0, false
	}
	e.written += int64(n)
	if n < len(p) {
		e.writable = false
	}
	return n, true
}

// close closes both ends and reports the tunnel ended.
func (t *evTunnel) close() {
	if t.ends[0].fd < 0 {
		return
	}
	l := t.l
	t.closeFDs()
	last := l.tunnels[len(l.tunnels)-1]
	l.tunnels[t.idx] = last
	last.idx = t.idx
	l.tunnels[len(l.tunnels)-1] = nil
	l.tunnels = l.tunnels[:len(l.tunnels)-1]
	l.tunnelCount.Add(-1)
	t.done(t.ends[1].written, t.ends[0].written)
}

func (t *evTunnel) closeFDs() {
	for i := range t.ends {
		if t.ends[i].fd >= 0 {
			t.l.closeFD(t.ends[i].fd)
			t.ends[i].fd = -1
		}
		t.ends[i].pending = nil
	}
}

// runAgain gives the tunnels whose share of the last turn ran out their
// next one.
func (l *evLoop) runAgain() {
	again := l.again
	l.again = l.spare[:0]
	for _, t := range again {
		t.queued = false
		t.pump()
	}
	clear(again)
	l.spare = again
}

// tunnelBuffer is the loop's read buffer for tunnels: what is read is
// written before the next read, and what a socket does not take is copied
// out (tunnelEnd.pending).
func (l *evLoop) tunnelBuffer() []byte {
	if l.tbuf == nil {
		l.tbuf = make([]byte, tunnelReadSize)
	}
	return l.tbuf
}

// rawWrite is write(2) as a raw system call (see rawRead). A peer that
// closed makes it fail with EPIPE: the runtime ignores the SIGPIPE of a
// descriptor other than standard output and error.
func rawWrite(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(unix.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
