//go:build !linux

package proxy

import (
	"context"
	"net"
)

// engine is the Linux event loop; elsewhere the fasthttp server serves
// every connection.
type engine struct{ handoff net.Listener }

func startEngine(*Proxy, net.Listener) (*engine, error) { return nil, nil }

func (*engine) shutdown(context.Context) error { return nil }

func (*engine) openConns() int64 { return 0 }
