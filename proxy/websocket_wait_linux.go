package proxy

import (
	"net"
	"syscall"
)

// readWaiter parks a goroutine in the runtime's netpoller until its
// connection has data to read, has reached EOF or has failed, without a
// read buffer: a tunnel idle for hours holds no copy buffer (see
// websocket.go). Built once per tunnel direction, so waiting allocates
// nothing.
type readWaiter struct {
	rc    syscall.RawConn
	peek  [1]byte
	ready func(fd uintptr) bool
}

// newReadWaiter returns a waiter for c, or nil when c is not a bare socket
// (a *tls.Conn may hold decrypted bytes its socket no longer shows): reads
// of such connections then just block in Read, holding a buffer.
func newReadWaiter(c net.Conn) *readWaiter {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	w := &readWaiter{rc: rc}
	w.ready = func(fd uintptr) bool {
		// MSG_PEEK leaves the byte for Read; EAGAIN means "not yet", and
		// returning false makes the runtime wait for the next readiness
		// edge. Data, EOF (0 bytes) and errors all end the wait: Read
		// reports them.
		_, _, err := syscall.Recvfrom(int(fd), w.peek[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return err != syscall.EAGAIN
	}
	return w
}

// wait returns when the connection is readable, or with the error that
// closing it caused. A nil waiter returns at once.
func (w *readWaiter) wait() error {
	if w == nil {
		return nil
	}
	return w.rc.Read(w.ready)
}
