//go:build !unix

package redisstore

// canPeek: no non-blocking MSG_PEEK here (Windows), so a connection is
// reused without the liveness check; one Redis closed fails its lookup,
// and the next lookup dials.
const canPeek = false

func (c *respConn) peekFD(fd uintptr) bool { return true }
