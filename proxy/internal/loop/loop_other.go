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
