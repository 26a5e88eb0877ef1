package proxy

import (
	"net"
	"sync"
)

// handoffListener is the fasthttp server's listener when the event loop
// (eventloop_linux.go) accepts clients: Accept returns the connections the
// loop hands over, for the requests it does not serve itself.
type handoffListener struct {
	addr net.Addr
	ch   chan net.Conn
	done chan struct{}
	once sync.Once
}

func newHandoffListener(addr net.Addr) *handoffListener {
	return &handoffListener{addr: addr, ch: make(chan net.Conn, 256), done: make(chan struct{})}
}

func (l *handoffListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.ch:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *handoffListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *handoffListener) Addr() net.Addr { return l.addr }

// push hands c to the server without blocking the caller (an event loop);
// after Close, c is closed instead.
func (l *handoffListener) push(c net.Conn) {
	select {
	case l.ch <- c:
		return
	case <-l.done:
		c.Close()
		return
	default:
	}
	go func() {
		select {
		case l.ch <- c:
		case <-l.done:
			c.Close()
		}
	}()
}

// prefixConn is a handed-over connection whose first bytes were already
// read by the event loop: Read returns them before reading the socket.
//
// The embedded TCPConn's SyscallConn exposes the socket, for the liveness
// peek (peek_unix.go) and the tunnels' read waiter
// (websocket_wait_linux.go). Both run after fasthttp has read the request
// that carried the prefix, and a tunnel drains what is still buffered
// before it waits on the socket.
type prefixConn struct {
	*net.TCPConn
	prefix []byte
}

func (c *prefixConn) Read(p []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(p, c.prefix)
		c.prefix = c.prefix[n:]
		if len(c.prefix) == 0 {
			c.prefix = nil
		}
		return n, nil
	}
	return c.TCPConn.Read(p)
}
