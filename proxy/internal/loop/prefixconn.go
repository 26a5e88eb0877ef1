package loop

import "net"

// PrefixConn is a handed-over connection whose first bytes were already
// read by the event loop: Read returns them before reading the socket.
//
// The embedded TCPConn's SyscallConn exposes the socket, for the proxy's
// liveness peek and its tunnels' read waiter. Both run after fasthttp has
// read the request that carried the prefix, and a tunnel drains what is
// still buffered before it waits on the socket.
type PrefixConn struct {
	*net.TCPConn
	prefix []byte
	// routeDeclined: the first request in prefix is a route request the
	// route already declined on the loop.
	routeDeclined bool
}

// TakeRouteDeclined reports, once, whether the first request on the
// connection is a route request the route already declined on the loop
// (Redis failed and redis.on_error forwards): it goes upstream without
// meeting the route again. Later calls return false.
func (c *PrefixConn) TakeRouteDeclined() bool {
	d := c.routeDeclined
	c.routeDeclined = false
	return d
}

func (c *PrefixConn) Read(p []byte) (int, error) {
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

// Buffered is how many of the prefix bytes are still to be read.
func (c *PrefixConn) Buffered() int { return len(c.prefix) }
