//go:build !unix

package proxy

import "net"

// peerClosed cannot look at the socket here; the retry of safe requests
// covers a connection the upstream closed while idle.
func peerClosed(net.Conn) bool { return false }

// clientGone cannot look at the socket here; a gone client is noticed when
// its response is written.
func clientGone(net.Conn) bool { return false }
