package mirrortest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/FerretDB/FerretDB/ferretdb"
	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest"

	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/mirror"
)

// env is one test's MongoDB (FerretDB) and Redis.
type env struct {
	mongoURL  string
	redisAddr string
	db        *mongo.Database
	redis     *redis.Client
}

// newEnv starts FerretDB and Redis for one test; both stop at cleanup.
func newEnv(t testing.TB) *env {
	t.Helper()
	e := &env{mongoURL: startFerretDB(t), redisAddr: startRedis(t)}
	client, err := mongo.Connect(options.Client().ApplyURI(e.mongoURL))
	if err != nil {
		t.Fatalf("connect to FerretDB: %v", err)
	}
	t.Cleanup(func() { _ = client.Disconnect(context.Background()) })
	e.db = client.Database("rocketchat")
	e.redis = redis.NewClient(&redis.Options{Addr: e.redisAddr})
	t.Cleanup(func() { _ = e.redis.Close() })
	return e
}

// startFerretDB runs FerretDB in-process on 127.0.0.1:0 with its SQLite
// backend in a temporary directory (files, not SQLite's in-memory mode), and
// returns its MongoDB URL.
func startFerretDB(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	f, err := ferretdb.New(&ferretdb.Config{
		Listener:  ferretdb.ListenerConfig{TCP: "127.0.0.1:0"},
		Handler:   "sqlite",
		SQLiteURL: "file:" + dir + "/",
		Logger:    slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatalf("start FerretDB: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = f.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return f.MongoDBURI()
}

// startRedis starts a redis-server of its own on a free port, never the
// machine's 6379. Without redis-server on PATH it falls back to miniredis,
// unless SESSIONGATE_TEST_REQUIRE_REDIS=1 forbids that.
func startRedis(t testing.TB) string {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("SESSIONGATE_TEST_REQUIRE_REDIS") == "1" {
			t.Fatalf("redis-server not on PATH and SESSIONGATE_TEST_REQUIRE_REDIS=1")
		}
		t.Logf("redis-server not on PATH: falling back to miniredis")
		return miniredis.RunT(t).Addr()
	}
	dir := t.TempDir()
	for attempt := 0; ; attempt++ {
		port := freePort(t)
		cmd := exec.Command(bin, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no", "--dir", dir)
		log, err := os.Create(filepath.Join(dir, fmt.Sprintf("redis-%d.log", attempt)))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Start(); err != nil {
			t.Fatalf("start redis-server: %v", err)
		}
		exited := make(chan struct{})
		go func() {
			_ = cmd.Wait()
			close(exited)
		}()
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		if waitRedis(addr, exited) {
			t.Cleanup(func() {
				_ = cmd.Process.Kill()
				<-exited
				_ = log.Close()
			})
			return addr
		}
		_ = cmd.Process.Kill()
		<-exited
		_ = log.Close()
		if attempt == 3 {
			b, _ := os.ReadFile(log.Name())
			t.Fatalf("redis-server did not start: %s", b)
		}
	}
}

func waitRedis(addr string, exited <-chan struct{}) bool {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if c.Ping(context.Background()).Err() == nil {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// config returns a mirror configuration for e with the defaults, a short
// reconciliation off unless set, and prefix as the key prefix.
func (e *env) config(prefix string) *config.Config {
	c := config.Defaults()
	c.Redis.URL = "redis://" + e.redisAddr + "/0"
	c.Redis.KeyPrefix = prefix
	c.Mirror.MongoURL = e.mongoURL
	c.Mirror.Database = "rocketchat"
	c.Mirror.ReconcileInterval = time.Hour
	return c
}

// runMirror runs mirror.Run in the background until the returned stop
// function (also called at cleanup) is called; stop fails the test if Run
// returned an error.
func runMirror(t testing.TB, cfg *config.Config, log *zap.Logger) (stop func()) {
	t.Helper()
	if log == nil {
		log = zaptest.NewLogger(t, zaptest.Level(zap.WarnLevel))
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- mirror.Run(ctx, cfg, log) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-errc:
				if err != nil {
					t.Errorf("mirror.Run: got %v, want nil", err)
				}
			case <-time.After(30 * time.Second):
				t.Errorf("mirror.Run did not return 30s after cancel")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// eventually polls cond every 20ms until it holds or timeout passes, and
// returns how long it took.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) time.Duration {
	t.Helper()
	began := time.Now()
	for {
		if cond() {
			return time.Since(began)
		}
		if time.Since(began) > timeout {
			t.Fatalf("%s: not within %v", what, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// get returns a key's value, "" when missing.
func (e *env) get(t testing.TB, key string) string {
	t.Helper()
	v, err := e.redis.Get(context.Background(), key).Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	return v
}

func (e *env) exists(t testing.TB, key string) bool {
	t.Helper()
	n, err := e.redis.Exists(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}
