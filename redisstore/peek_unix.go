//go:build unix

package redisstore

import (
	"io"
	"net"
	"syscall"
)

// bindPeek readies the liveness check on reuse (respConn.ready) for a
// connection that has a socket under it.
func (c *respConn) bindPeek(nc net.Conn) {
	if sc, ok := nc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
			c.peek = c.peekFD
		}
	}
}

func (c *respConn) peekFD(fd uintptr) bool {
	var b [1]byte
	n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
	switch {
	case n == 0 && err == nil:
		c.peekErr = io.EOF
	case n > 0:
		c.peekErr = errUnexpectedData
	case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		c.peekErr = nil
	default:
		c.peekErr = err
	}
	return true // never wait for readability
}
