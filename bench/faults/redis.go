//go:build linux

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// redisServer is a redis-server child on a fixed loopback port that can be
// killed, restarted on the same port, paused and resumed. Its data lives in
// an RDB snapshot in its own folder: written by save after seeding and
// loaded again at every start, so a restarted server comes back with the
// data a persistent production Redis would have.
type redisServer struct {
	ps    *proc.Set
	name  string
	addr  string
	dir   string
	extra []string
	p     *proc.Proc
}

func newRedis(ps *proc.Set, name string, extra ...string) (*redisServer, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(ps.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &redisServer{ps: ps, name: name, addr: addr, dir: dir, extra: extra}
	return r, r.start()
}

func (r *redisServer) port() string {
	_, port, _ := net.SplitHostPort(r.addr)
	return port
}

// start (re)starts the server on its address and waits until it answers.
func (r *redisServer) start() error {
	args := append([]string{"--port", r.port(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", r.dir, "--dbfilename", "dump.rdb"}, r.extra...)
	p, err := r.ps.Start(r.name, nil, "redis-server", args...)
	if err != nil {
		return err
	}
	r.p = p
	return proc.WaitTCP(context.Background(), p, r.addr, 10*time.Second)
}

// kill stops the server as a crash would.
func (r *redisServer) kill() { r.p.Kill() }

// pause freezes the process: connections stay open, nothing is answered.
func (r *redisServer) pause() { r.p.Signal(syscall.SIGSTOP) }

func (r *redisServer) resume() { r.p.Signal(syscall.SIGCONT) }

func (r *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: r.addr, DisableIdentity: true, Protocol: 2, MaxRetries: -1})
}

func (r *redisServer) url() string { return "redis://" + r.addr + "/0" }

// save writes the snapshot that start loads.
func (r *redisServer) save(ctx context.Context) error {
	c := r.client()
	defer c.Close()
	return c.Save(ctx).Err()
}

// sentinelSet is a master, its replica and one Sentinel watching them as
// "mymaster" with a quorum of one.
type sentinelSet struct {
	master, replica *redisServer
	sentinel        *proc.Proc
	addr            string // the Sentinel's
	client          *redis.SentinelClient
}

func newSentinelSet(ctx context.Context, ps *proc.Set) (*sentinelSet, error) {
	master, err := newRedis(ps, "redis-master")
	if err != nil {
		return nil, err
	}
	replica, err := newRedis(ps, "redis-replica", "--replicaof", "127.0.0.1", master.port())
	if err != nil {
		return nil, err
	}
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	dir := filepath.Join(ps.Dir, "sentinel")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	conf := filepath.Join(dir, "sentinel.conf")
	// down-after and failover-timeout are short so that the failover is
	// about sessiongate, not about Sentinel's own caution.
	err = os.WriteFile(conf, []byte(fmt.Sprintf("port %s\nbind 127.0.0.1\ndir %s\n"+
		"sentinel monitor mymaster 127.0.0.1 %s 1\n"+
		"sentinel down-after-milliseconds mymaster 2000\n"+
		"sentinel failover-timeout mymaster 10000\n", port, dir, master.port())), 0o644)
	if err != nil {
		return nil, err
	}
	sp, err := ps.Start("sentinel", nil, "redis-server", conf, "--sentinel")
	if err != nil {
		return nil, err
	}
	if err := proc.WaitTCP(ctx, sp, addr, 10*time.Second); err != nil {
		return nil, err
	}
	s := &sentinelSet{master: master, replica: replica, sentinel: sp, addr: addr,
		client: redis.NewSentinelClient(&redis.Options{Addr: addr, DisableIdentity: true, Protocol: 2})}
	// The replica must be in sync and known to Sentinel before a failover
	// can pick it.
	rc := replica.client()
	defer rc.Close()
	err = until(ctx, 20*time.Second, func() bool {
		info, err := rc.Info(ctx, "replication").Result()
		if err != nil || !strings.Contains(info, "master_link_status:up") {
			return false
		}
		reps, err := s.client.Replicas(ctx, "mymaster").Result()
		if err != nil || len(reps) == 0 {
			return false
		}
		f := reps[0]["flags"]
		return reps[0]["port"] == replica.port() && !strings.Contains(f, "down") && !strings.Contains(f, "disconnected")
	})
	if err != nil {
		return nil, fmt.Errorf("sentinel never saw an in-sync replica: %w", err)
	}
	return s, nil
}

// masterPort is the port Sentinel names as the master now.
func (s *sentinelSet) masterPort(ctx context.Context) string {
	addr, err := s.client.GetMasterAddrByName(ctx, "mymaster").Result()
	if err != nil || len(addr) != 2 {
		return ""
	}
	return addr[1]
}

// until polls cond every 50 ms for up to d.
func until(ctx context.Context, d time.Duration, cond func() bool) error {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return fmt.Errorf("not within %v", d)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// redisVersion is `redis-server --version`, for the report.
func redisVersion() string {
	out, err := exec.Command("redis-server", "--version").Output()
	if err != nil {
		return "unknown"
	}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "v=") {
			return f[2:]
		}
	}
	return strings.TrimSpace(string(out))
}
