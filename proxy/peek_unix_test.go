//go:build unix

package proxy

import (
	"net"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	a, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	b, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); b.Close() })
	return a, b
}

// TestClientGoneIgnoresReadDeadline: a client whose socket still carries a
// passed read deadline (fasthttp's request-head deadline) is alive as long
// as its peer is; only a close or reset makes it gone.
func TestClientGoneIgnoresReadDeadline(t *testing.T) {
	client, server := tcpPair(t)
	var probe idleProbe
	server.SetReadDeadline(time.Now().Add(-time.Second))
	if clientGone(server) {
		t.Fatal("clientGone: true for a live client whose read deadline has passed")
	}
	if probe.peerClosed(server) {
		t.Fatal("peerClosed: true for a live, silent peer whose read deadline has passed")
	}
	client.Write([]byte("x"))
	time.Sleep(50 * time.Millisecond)
	if clientGone(server) {
		t.Fatal("clientGone: true for a client with pipelined bytes")
	}
	if !probe.peerClosed(server) {
		t.Fatal("peerClosed: false for a peer that sent bytes nobody asked for")
	}
	var b [1]byte
	server.SetReadDeadline(time.Time{})
	server.Read(b[:])
	server.SetReadDeadline(time.Now().Add(-time.Second))
	client.Close()
	time.Sleep(50 * time.Millisecond)
	if !clientGone(server) {
		t.Fatal("clientGone: false for a client that closed")
	}
}
