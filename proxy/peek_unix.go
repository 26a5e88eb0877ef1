//go:build unix

package proxy

import (
	"crypto/tls"
	"net"
	"syscall"
)

// peerClosed reports whether the peer of c has closed or reset the
// connection, or sent bytes nobody asked for, without blocking and without
// consuming anything: one recv(MSG_PEEK|MSG_DONTWAIT). An idle keep-alive
// connection is healthy exactly when that recv would block (EAGAIN).
// Connections that expose no file descriptor are assumed alive.
func peerClosed(c net.Conn) bool {
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
	closed := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil, n == 0, n > 0:
			// An error, EOF, or unsolicited data (on an idle upstream
			// connection, at best a stray response): not reusable.
			closed = true
		}
		return true
	})
	return closed || err != nil
}

// clientGone reports whether a client connection was closed or reset by its
// peer. Unlike peerClosed, pipelined bytes waiting on it mean it is alive.
func clientGone(c net.Conn) bool {
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
	gone := false
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (err == nil && n == 0) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
		return true
	})
	return gone || err != nil
}
