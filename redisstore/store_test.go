package redisstore_test

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/redisstore"
	"github.com/sessiongate/sessiongate/sessions"
)

// storeTestServer is a Redis for one test: a redis-server on a free
// loopback port, or miniredis where redis-server is missing.
type storeTestServer struct {
	addr string
	cmd  *exec.Cmd // nil for miniredis
}

func startStoreTestServer(t testing.TB) *storeTestServer {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		m := miniredis.RunT(t)
		return &storeTestServer{addr: m.Addr()}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	s := &storeTestServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	s.cmd = exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		thaw(s.cmd.Process)
		s.cmd.Process.Kill()
		s.cmd.Wait()
	})
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.Dial("tcp", s.addr); err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatal("redis-server did not start")
		}
	}
}

func (s *storeTestServer) client(t testing.TB) redis.UniversalClient {
	t.Helper()
	rdb, err := redisstore.NewClient(&config.Redis{URL: "redis://" + s.addr + "/0", Timeout: time.Second, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

const storeTestPrefix = "rc:"

func storeSeed(t testing.TB, rdb redis.UniversalClient, userID, token string, sessions map[string]string) {
	t.Helper()
	ctx := context.Background()
	keys := redisstore.Keys{Prefix: storeTestPrefix}
	if err := rdb.Set(ctx, keys.TokenKey(userID, auth.HashToken(token)), `{"when":"2023-05-23T16:33:45.202Z"}`, 0).Err(); err != nil {
		t.Fatal(err)
	}
	for id, doc := range sessions {
		if err := rdb.Set(ctx, keys.SessionKey(userID, id), doc, 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestStoreOneCommandPerLookup counts commands on the server: each lookup
// is one command, so one round trip (docs/route.md).
func TestStoreOneCommandPerLookup(t *testing.T) {
	srv := startStoreTestServer(t)
	if srv.cmd == nil {
		t.Skip("INFO commandstats needs a real redis-server")
	}
	rdb := srv.client(t)
	storeSeed(t, rdb, "alice", "alice-token", map[string]string{"s1": `{}`})
	store := redisstore.New(rdb, storeTestPrefix)
	ctx := context.Background()
	store.Ping(ctx) // connect first

	before := commandCalls(t, rdb)
	hash := []byte(auth.HashToken("alice-token"))
	const n = 10
	for range n {
		store.Session(ctx, []byte("alice"), hash, []byte("s1"))
		store.Authenticate(ctx, []byte("alice"), hash)
	}
	after := commandCalls(t, rdb)
	if got := after["mget"] - before["mget"]; got != 2*n {
		t.Errorf("mget calls: got %d, want %d", got, 2*n)
	}
	// Everything else: only the INFO of the first count.
	if got := after["total"] - before["total"]; got != 2*n+1 {
		t.Errorf("commands in all: got %d, want %d", got, 2*n+1)
	}
}

// commandCalls parses INFO commandstats into calls per command, and their
// sum as "total".
func commandCalls(t *testing.T, rdb redis.UniversalClient) map[string]int {
	t.Helper()
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	calls := map[string]int{}
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimPrefix(strings.TrimSpace(line), "cmdstat_"), ":calls=")
		if !ok {
			continue
		}
		n, _ := strconv.Atoi(rest[:strings.IndexByte(rest+",", ',')])
		calls[name] = n
		calls["total"] += n
	}
	return calls
}

// TestStoreFailuresAreNotAnswers: a Redis that is down or frozen gives an
// error that is neither "invalid token" nor "not found", within the
// caller's deadline, and without any key in its text.
func TestStoreFailuresAreNotAnswers(t *testing.T) {
	srv := startStoreTestServer(t)
	if srv.cmd == nil {
		t.Skip("stopping and freezing need a real redis-server")
	}
	rdb := srv.client(t)
	store := redisstore.New(rdb, storeTestPrefix)
	hash := []byte(auth.HashToken("alice-token"))

	check := func(t *testing.T, what string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := store.Session(ctx, []byte("alice"), hash, []byte("s1"))
		errAuth := store.Authenticate(ctx, []byte("alice"), hash)
		for _, err := range []error{err, errAuth} {
			if err == nil || errors.Is(err, auth.ErrInvalidToken) || errors.Is(err, sessions.ErrNotFound) {
				t.Errorf("%s: got %v, want a Redis failure", what, err)
				continue
			}
			if strings.Contains(err.Error(), string(hash)) || strings.Contains(err.Error(), "alice") {
				t.Errorf("%s: error names a key: %v", what, err)
			}
		}
		// A deadline, not a wait: generous bound for a loaded machine.
		if elapsed := time.Since(start); elapsed > 5*time.Second {
			t.Errorf("%s: took %v with a 200ms deadline", what, elapsed)
		}
	}

	freeze(t, srv.cmd.Process)
	check(t, "frozen")
	thaw(srv.cmd.Process)
	srv.cmd.Process.Kill()
	srv.cmd.Wait()
	check(t, "stopped")
}
