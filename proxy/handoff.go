package proxy

import (
	"net"
	"sync"
)

// handoffListener is the fasthttp server's listener when the event loop
// (proxy/internal/loop) accepts clients: Accept returns the connections the
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
