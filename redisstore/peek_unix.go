//go:build unix

package redisstore

import (
	"io"
	"syscall"
)

// canPeek: the liveness check on reuse (respConn.ready) can be made.
const canPeek = true

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
