package redisstore_test

// The direct implementation against a stand-in Redis on a raw loopback
// socket that answers what a real server would not (broken, short or
// hostile replies) and closes connections at will: the connection is
// closed after any failure and never reused, and the answer is always an
// error, never "invalid token" or "not found".

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/redisstore"
	"github.com/sessiongate/sessiongate/sessions"
)

// fakeRedis accepts connections and lets reply answer each command; a
// reply of "" closes the connection without answering, and "stall" keeps it
// open without answering.
type fakeRedis struct {
	ln    net.Listener
	reply func(conn int, cmd []string) string

	mu     sync.Mutex
	conns  int // accepted so far
	closed int // ended: closed by the client (EOF seen) or by reply
}

func startFakeRedis(t *testing.T, reply func(conn int, cmd []string) string) *fakeRedis {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeRedis{ln: ln, reply: reply}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			f.mu.Lock()
			f.conns++
			n := f.conns
			f.mu.Unlock()
			wg.Go(func() { f.serve(n, c) })
		}
	})
	return f
}

func (f *fakeRedis) serve(n int, c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	for {
		cmd, err := readCommand(r)
		if err != nil {
			f.mu.Lock()
			f.closed++
			f.mu.Unlock()
			return
		}
		switch out := f.reply(n, cmd); out {
		case "":
			f.mu.Lock()
			f.closed++ // by the server: ended all the same
			f.mu.Unlock()
			return
		case "stall":
		default:
			c.Write([]byte(out))
		}
	}
}

func (f *fakeRedis) counts() (conns, closed int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.conns, f.closed
}

// readCommand reads one RESP array of bulk strings.
func readCommand(r *bufio.Reader) ([]string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "*")))
	if err != nil {
		return nil, err
	}
	cmd := make([]string, n)
	for i := range cmd {
		if line, err = r.ReadString('\n'); err != nil {
			return nil, err
		}
		size, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
		if err != nil {
			return nil, err
		}
		b := make([]byte, size+2)
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, err
		}
		cmd[i] = string(b[:size])
	}
	return cmd, nil
}

func TestDirectBrokenReplies(t *testing.T) {
	const good = "*2\r\n$2\r\n{}\r\n$2\r\n{}\r\n"
	tests := []struct {
		name  string
		reply string // to the first MGET; later ones get good
	}{
		{"connection closed", ""},
		{"no answer", "stall"},
		{"partial bulk", "*2\r\n$2\r\n{}\r\n$10\r\nabc"},
		{"partial header", "*2\r\n$2\r"},
		{"error reply", "-ERR something\r\n"},
		{"error reply naming a key", "-NOPERM no access to rc:{alice}:token:" + auth.HashToken("alice-token") + "\r\n"},
		{"three values", "*3\r\n$2\r\n{}\r\n$2\r\n{}\r\n$2\r\n{}\r\n"},
		{"not an array", "+OK\r\n"},
		{"integer element", "*2\r\n:1\r\n$2\r\n{}\r\n"},
		{"bad length", "*2\r\n$x\r\n{}\r\n$2\r\n{}\r\n"},
		{"negative length", "*2\r\n$-2\r\n$2\r\n{}\r\n"},
		{"missing CRLF after bulk", "*2\r\n$2\r\n{}XX$2\r\n{}\r\n"},
		{"huge document", "*2\r\n$2\r\n{}\r\n$999999999\r\n"},
		{"bare LF", "*2\n$2\n{}\n$2\n{}\n"},
		{"RESP3 null", "*2\r\n_\r\n$2\r\n{}\r\n"},
		{"empty line", "\r\n"},
		{"reply and extra bytes", good + "+OK\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFakeRedis(t, func(conn int, cmd []string) string {
				if conn == 1 && strings.EqualFold(cmd[0], "MGET") {
					return tt.reply
				}
				return good
			})
			rdb := redis.NewClient(&redis.Options{Addr: f.ln.Addr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1})
			t.Cleanup(func() { rdb.Close() })
			s := redisstore.New(rdb, "rc:")
			t.Cleanup(func() { s.Close() })
			hash := []byte(auth.HashToken("alice-token"))
			lookup := func() (string, error) {
				return s.Session(deadlineOnly{time.Now().Add(300 * time.Millisecond)}, []byte("alice"), hash, []byte("s1"))
			}

			doc, err := lookup()
			if tt.reply == good+"+OK\r\n" {
				// The answer is complete; the extra bytes are seen when the
				// connection is next taken, which then dials instead.
				if err != nil || doc != "{}" {
					t.Fatalf("first lookup: got %q, %v; want {}", doc, err)
				}
			} else {
				if err == nil || errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, sessions.ErrNotFound) {
					t.Fatalf("first lookup: got %q, %v; want a Redis failure", doc, err)
				}
				if strings.Contains(err.Error(), string(hash)) || strings.Contains(err.Error(), "alice") {
					t.Errorf("error names a key: %v", err)
				}
			}
			// The next lookup gets a new connection and its answer.
			if doc, err := lookup(); err != nil || doc != "{}" {
				t.Fatalf("second lookup: got %q, %v; want {}", doc, err)
			}
			var conns, closed int
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
				if conns, closed = f.counts(); closed >= 1 {
					break
				}
			}
			if conns != 2 || closed != 1 {
				t.Errorf("connections: got %d opened, %d ended; want 2, 1", conns, closed)
			}
		})
	}
}

// TestDirectPoolBound: with every connection busy, a lookup waits for one
// until its deadline and then fails; it does not open more.
func TestDirectPoolBound(t *testing.T) {
	release := make(chan struct{})
	f := startFakeRedis(t, func(conn int, cmd []string) string {
		<-release
		return "*2\r\n$2\r\n{}\r\n$2\r\n{}\r\n"
	})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	rdb := redis.NewClient(&redis.Options{Addr: f.ln.Addr().String(), Protocol: 2, DisableIdentity: true, MaxRetries: -1, PoolSize: 2})
	t.Cleanup(func() { rdb.Close() })
	s := redisstore.New(rdb, "rc:")
	t.Cleanup(func() { s.Close() })
	hash := []byte(auth.HashToken("t"))

	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Session(deadlineOnly{time.Now().Add(5 * time.Second)}, []byte("u"), hash, []byte("s"))
		})
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if conns, _ := f.counts(); conns == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("two lookups did not open two connections")
		}
	}
	start := time.Now()
	_, err := s.Session(deadlineOnly{start.Add(100 * time.Millisecond)}, []byte("u"), hash, []byte("s"))
	if err == nil || errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("third lookup: got %v, want a failure", err)
	}
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("third lookup took %v with a 100ms deadline", elapsed)
	}
	close(release)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("lookup %d: %v", i, err)
		}
	}
	if conns, _ := f.counts(); conns != 2 {
		t.Errorf("connections: got %d, want 2 (the pool size)", conns)
	}
}

// TestDirectClosed: lookups after Close fail as failures, not answers.
func TestDirectClosed(t *testing.T) {
	f := startFakeRedis(t, func(int, []string) string { return "*2\r\n$2\r\n{}\r\n$2\r\n{}\r\n" })
	rdb := redis.NewClient(&redis.Options{Addr: f.ln.Addr().String(), Protocol: 2, DisableIdentity: true})
	t.Cleanup(func() { rdb.Close() })
	s := redisstore.New(rdb, "rc:")
	ctx := context.Background()
	if _, err := s.Session(ctx, []byte("u"), []byte("h"), []byte("s")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	_, err := s.Session(ctx, []byte("u"), []byte("h"), []byte("s"))
	if err == nil || errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, sessions.ErrNotFound) {
		t.Errorf("after Close: got %v, want a failure", err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if _, closed := f.counts(); closed == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Close did not close the idle connection")
		}
	}
}
