//go:build !linux

package proxy

import "net"

// readWaiter is a no-op where there is no MSG_PEEK wait: each tunnel
// direction then blocks in Read holding a pooled copy buffer, which costs
// copyBufferSize per idle direction but is otherwise the same.
type readWaiter struct{}

func newReadWaiter(net.Conn) *readWaiter { return nil }

func (*readWaiter) wait() error { return nil }
