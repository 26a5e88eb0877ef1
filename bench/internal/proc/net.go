//go:build linux

package proc

import (
	"context"
	"fmt"
	"net"
	"time"
)

// FreeAddr returns a loopback address whose port was free a moment ago.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// WaitTCP waits until addr accepts connections, p exits, limit passes or
// ctx ends. A nil p waits for whoever is meant to listen on addr.
func WaitTCP(ctx context.Context, p *Proc, addr string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.Exited() {
			return fmt.Errorf("%s exited before listening on %s (see %s)", p.name, addr, p.logPath)
		}
		if time.Now().After(deadline) {
			if p == nil {
				return fmt.Errorf("nothing listening on %s after %v", addr, limit)
			}
			return fmt.Errorf("%s not listening on %s after %v (see %s)", p.name, addr, limit, p.logPath)
		}
		if err := Sleep(ctx, 20*time.Millisecond); err != nil {
			return err
		}
	}
}

// Sleep waits d or until ctx ends, whichever comes first, and returns ctx's
// error in the second case: the harnesses pace their polling with it.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
