//go:build linux

package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// TestTunnelsOnLoopUnderShutdown runs tunnels through a Proxy whose event
// loop carries them, in this process (so -race sees the hand-over from the
// fasthttp path, the loop's end-of-tunnel callback and the gradual close
// meeting each other): every tunnel must be on the loop, carry its bytes
// both ways, and be closed by a Shutdown that runs while clients are still
// closing theirs, leaving nothing counted open.
func TestTunnelsOnLoopUnderShutdown(t *testing.T) {
	addr, p := fwdStartProxy(t, "http://"+startEcho(t, true))

	const n = 20
	clients := make([]net.Conn, n)
	for i := range clients {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		// The first message rides behind the handshake, in the same write.
		fmt.Fprintf(c, "%shello %02d;", wsClientHead, i)
		br := bufio.NewReader(c)
		head := make([]byte, len(wsUpstreamHead))
		if _, err := io.ReadFull(br, head); err != nil || string(head) != wsUpstreamHead {
			t.Fatalf("tunnel %d: handshake answer %q, %v; want %q", i, head, err, wsUpstreamHead)
		}
		want := fmt.Sprintf("hello %02d;", i)
		got := make([]byte, len(want))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != want {
			t.Fatalf("tunnel %d: echo %q, %v; want %q", i, got, err, want)
		}
		clients[i] = c
	}
	if got := p.loopTunnels(); got != n {
		t.Fatalf("event loop carries %d tunnels, want %d", got, n)
	}
	if got := p.OpenTunnels(); got != n {
		t.Fatalf("OpenTunnels = %d, want %d", got, n)
	}

	// Half the clients talk and close while Shutdown closes every tunnel:
	// each gets its echo whole, or the end of its tunnel, never other
	// bytes.
	var wg sync.WaitGroup
	for i, c := range clients[:n/2] {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msg := fmt.Sprintf("bye %02d;", i)
			io.WriteString(c, msg)
			got := make([]byte, len(msg))
			k, err := io.ReadFull(c, got)
			if string(got[:k]) != msg[:k] || (err == nil) != (k == len(msg)) {
				t.Errorf("tunnel %d: echo %q, %v; want %q or a part of it and the end", i, got[:k], err, msg)
			}
			c.Close()
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	wg.Wait()
	for i, c := range clients[n/2:] {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Read(make([]byte, 1)); err != io.EOF {
			t.Errorf("tunnel %d after Shutdown: read %v, want EOF", n/2+i, err)
		}
	}
	if got := p.OpenTunnels(); got != 0 {
		t.Errorf("OpenTunnels after Shutdown = %d, want 0", got)
	}
	if got := p.loopTunnels(); got != 0 {
		t.Errorf("event loop tunnels after Shutdown = %d, want 0", got)
	}
}
