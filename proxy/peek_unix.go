//go:build unix

package proxy

import (
	"crypto/tls"
	"io"
	"net"
	"syscall"
)

// idleProbe checks an idle upstream connection before each reuse, without
// allocating: the RawConn and the callback are made on the first check and
// kept.
type idleProbe struct {
	rc  syscall.RawConn
	fn  func(fd uintptr)
	n   int
	err error
	b   [1]byte
}

// peerClosed reports whether the peer of c has closed or reset the
// connection, or sent bytes nobody asked for: on an idle upstream
// connection, at best a stray response, so it is not reusable. An idle
// keep-alive connection is healthy exactly when a read would block.
func (p *idleProbe) peerClosed(c net.Conn) bool {
	if p.fn == nil {
		if tc, ok := c.(*tls.Conn); ok {
			c = tc.NetConn()
		}
		sc, ok := c.(syscall.Conn)
		if !ok {
			return false
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			return true
		}
		p.rc, p.fn = rc, p.recv
	}
	p.n, p.err = 0, nil
	if err := p.rc.Control(p.fn); err != nil {
		return true
	}
	return p.n != 0 || p.err != nil
}

func (p *idleProbe) recv(fd uintptr) {
	p.n, p.err = peekFD(fd, p.b[:])
}

// clientGone reports whether a client connection was closed or reset by its
// peer. Unlike idleProbe.peerClosed, pipelined bytes waiting on it mean it is alive.
func clientGone(c net.Conn) bool {
	n, err := peek(c)
	return n == 0 && err != nil
}

// peek looks at c's socket without blocking and without consuming
// anything: one recv(MSG_PEEK|MSG_DONTWAIT). It returns n > 0 when bytes
// are waiting, (0, nil) when a read would block, and an error (io.EOF for an
// orderly close) otherwise. Connections that expose no file descriptor look
// idle and alive.
//
// The recv runs under RawConn.Control, not RawConn.Read: Read fails with
// the deadline error once the socket's read deadline has passed, and a
// client socket still carries fasthttp's request-head deadline
// (proxy.read_header_timeout) while its request waits for the upstream;
// that error would pass for the client having gone. MSG_DONTWAIT already
// keeps the recv from blocking.
func peek(c net.Conn) (int, error) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, err
	}
	var n int
	var rerr error
	var b [1]byte
	err = rc.Control(func(fd uintptr) {
		n, rerr = peekFD(fd, b[:])
	})
	if err != nil {
		return 0, err
	}
	return n, rerr
}

// peekFD is the recv(MSG_PEEK|MSG_DONTWAIT) of peek, into b.
func peekFD(fd uintptr, b []byte) (int, error) {
	m, _, err := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return 0, nil
	case err != nil:
		return 0, err
	case m == 0:
		return 0, io.EOF
	}
	return m, nil
}
