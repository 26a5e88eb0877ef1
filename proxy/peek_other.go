//go:build !unix

package proxy

import "net"

// clientGone cannot look at the socket here; a gone client is noticed when
// its response is written.
func clientGone(net.Conn) bool { return false }

// idleProbe cannot look at the socket here; the retry of safe requests
// covers a connection the upstream closed while idle.
type idleProbe struct{}

func (*idleProbe) peerClosed(net.Conn) bool { return false }
