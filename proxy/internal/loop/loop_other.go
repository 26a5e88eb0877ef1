//go:build !linux

package loop

import (
	"context"
	"net"
)

// Engine is the Linux event loop; elsewhere the caller's server serves
// every connection.
type Engine struct{}

// Start returns nil: there is no event loop off Linux.
func Start(net.Listener, Options) (*Engine, error) { return nil, nil }

// Shed does nothing.
func (*Engine) Shed() {}

// Shutdown does nothing.
func (*Engine) Shutdown(context.Context) error { return nil }

// OpenConns is 0.
func (*Engine) OpenConns() int64 { return 0 }

// Tunnel is a tunnel joined on a loop; there are none off Linux.
type Tunnel struct{}

// Close does nothing.
func (*Tunnel) Close() {}

// Join fails: the caller copies the tunnel itself.
func (*Engine) Join(client, upstream *net.TCPConn, done func(up, down int64)) (*Tunnel, error) {
	return nil, ErrNotJoinable
}

// Tunnels is 0.
func (*Engine) Tunnels() int64 { return 0 }
