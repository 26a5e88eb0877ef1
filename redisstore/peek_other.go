//go:build !unix

package redisstore

import "net"

// bindPeek leaves the liveness check out: there is no non-blocking
// MSG_PEEK here (Windows). A connection Redis closed fails its lookup, and
// the next lookup dials.
func (c *respConn) bindPeek(net.Conn) {}
