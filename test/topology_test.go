package test

// The route through each Redis topology a production user has:
// standalone with an ACL user (redis:// and rediss://), a 3-master Redis
// Cluster and master + replica + Sentinel, all real redis-server processes.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// routeNeedRedisServer skips t where redis-server is missing: miniredis
// cannot be a Cluster, a Sentinel or a TLS server.
func routeNeedRedisServer(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv(requireRedisEnv) == "1" {
			t.Fatalf("redis-server not on PATH and %s=1", requireRedisEnv)
		}
		t.Skip("topology tests need redis-server on PATH (miniredis cannot do Cluster, Sentinel or TLS)")
	}
}

// startRouteRedisProc runs redis-server with args (which must make it listen
// on port), stops it at cleanup, and waits until port accepts connections.
func startRouteRedisProc(t *testing.T, port int, args ...string) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	args = append([]string{"--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir,
		"--logfile", filepath.Join(dir, "redis.log")}, args...)
	return startRouteProc(t, port, dir, args...)
}

func startRouteProc(t *testing.T, port int, dir string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("redis-server: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			if b, err := os.ReadFile(filepath.Join(dir, "redis.log")); err == nil {
				t.Logf("redis-server :%d log:\n%s", port, b)
			}
		}
	})
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond); err == nil {
			c.Close()
			return cmd
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server on %s did not start", addr)
		}
	}
}

func routeAddr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// routeCheckServes checks the route end to end for the seed user: own
// session 200, wrong token 401, unknown session 404.
func routeCheckServes(t *testing.T, g *Gate, stored string) {
	t.Helper()
	seed := routeCreds(routeSeedUser, routeSeedToken)
	routeCheck(t, "own session", routeDo(t, g.Addr, "GET", routePath+"?sessionId="+routeSeedSession, seed...), 200, stored[:len(stored)-1]+`,"success":true}`)
	routeCheck(t, "wrong token", routeDo(t, g.Addr, "GET", routePath+"?sessionId="+routeSeedSession, routeCreds(routeSeedUser, "no")...), 401, route401)
	routeCheck(t, "unknown session", routeDo(t, g.Addr, "GET", routePath+"?sessionId=nope", seed...), 404, route404)
	routeCheck(t, "invalid query", routeDo(t, g.Addr, "GET", routePath+"?x=1", seed...), 400, route400Req)
}

func TestRouteStandaloneACLUser(t *testing.T) {
	t.Parallel()
	routeNeedRedisServer(t)
	// An ACL user allowed only what the route and /readyz need; the default
	// user stays open for seeding.
	r := StartRedis(t, "--user", "gate", "on", ">gate-secret", "~rc:*", "+mget", "+exists", "+ping")
	_, stored := routeSeedBodies(t)
	routeSeed(t, r.Client(), routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
	up := startRouteUpstream(t)

	t.Run("credentials in the URL", func(t *testing.T) {
		g := StartGate(t, routeEnv(up.URL, "redis://gate:gate-secret@"+r.Addr+"/0"))
		routeCheckServes(t, g, stored)
	})
	t.Run("credentials in their own settings", func(t *testing.T) {
		g := StartGate(t, routeEnv(up.URL, r.URL(), "SESSIONGATE_REDIS_USERNAME", "gate", "SESSIONGATE_REDIS_PASSWORD", "gate-secret"))
		routeCheckServes(t, g, stored)
		if strings.Contains(g.Logs(), "gate-secret") {
			t.Error("the Redis password is in the logs")
		}
	})
	t.Run("wrong password is a Redis failure, not a 401", func(t *testing.T) {
		g := StartGate(t, routeEnv(up.URL, "redis://gate:wrong@"+r.Addr+"/0"))
		up.Take()
		routeCheckForwarded(t, "wrong password", routeDo(t, g.Addr, "GET", routePath+"?sessionId="+routeSeedSession, routeCreds(routeSeedUser, routeSeedToken)...))
		if n := len(up.Take()); n != 1 {
			t.Errorf("upstream received %d requests, want 1", n)
		}
	})
}

func TestRouteStandaloneTLS(t *testing.T) {
	t.Parallel()
	routeNeedRedisServer(t)
	dir := t.TempDir()
	caFile, certFile, keyFile := routeWriteTLSFiles(t, dir)
	port := FreePort(t)
	startRouteProc(t, port, dir, "--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir, "--logfile", filepath.Join(dir, "redis.log"),
		"--tls-cert-file", certFile, "--tls-key-file", keyFile, "--tls-ca-cert-file", caFile, "--tls-auth-clients", "no",
		"--user", "gate", "on", ">gate-secret", "~rc:*", "+mget", "+exists", "+ping", "+set")

	pem, _ := os.ReadFile(caFile)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	c := redis.NewClient(&redis.Options{Addr: routeAddr(port), Username: "gate", Password: "gate-secret",
		TLSConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { c.Close() })
	_, stored := routeSeedBodies(t)
	routeSeed(t, c, routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
	up := startRouteUpstream(t)

	url := "rediss://gate:gate-secret@" + routeAddr(port) + "/0"
	t.Run("trusted CA", func(t *testing.T) {
		g := StartGate(t, routeEnv(up.URL, url, "SESSIONGATE_REDIS_TLS_CA_FILE", caFile))
		routeCheckServes(t, g, stored)
	})
	t.Run("unknown CA is a Redis failure, not a 401", func(t *testing.T) {
		g := StartGate(t, routeEnv(up.URL, url))
		up.Take()
		routeCheckForwarded(t, "unknown CA", routeDo(t, g.Addr, "GET", routePath+"?sessionId="+routeSeedSession, routeCreds(routeSeedUser, routeSeedToken)...))
	})
}

// routeWriteTLSFiles writes a CA and a server certificate for 127.0.0.1
// signed by it, as PEM files in dir.
func routeWriteTLSFiles(t *testing.T, dir string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "sessiongate test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caTmpl, &srvKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(srvKey)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	return write("ca.pem", "CERTIFICATE", caDER), write("server.pem", "CERTIFICATE", srvDER), write("server.key", "EC PRIVATE KEY", keyDER)
}

func TestRouteCluster(t *testing.T) {
	t.Parallel()
	routeNeedRedisServer(t)
	// Three masters, slots split by hand (CLUSTER ADDSLOTSRANGE + MEET), so
	// the test needs nothing but redis-server.
	var addrs, busPorts []string
	var nodes []*redis.Client
	ctx := context.Background()
	for i := range 3 {
		port, busPort := FreePort(t), FreePort(t)
		startRouteRedisProc(t, port, "--port", strconv.Itoa(port), "--cluster-enabled", "yes",
			"--cluster-port", strconv.Itoa(busPort), "--cluster-config-file", fmt.Sprintf("nodes-%d.conf", i),
			"--cluster-node-timeout", "2000")
		addrs = append(addrs, routeAddr(port))
		busPorts = append(busPorts, strconv.Itoa(busPort))
		n := redis.NewClient(&redis.Options{Addr: routeAddr(port), DisableIdentity: true, Protocol: 2})
		t.Cleanup(func() { n.Close() })
		nodes = append(nodes, n)
	}
	for i, n := range nodes {
		lo, hi := i*16384/3, (i+1)*16384/3-1
		if err := n.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("addslots on %s: %v", addrs[i], err)
		}
		if i > 0 {
			// CLUSTER MEET ip port cluster-port: the bus is not on port+10000.
			host, port, _ := net.SplitHostPort(addrs[i])
			if err := nodes[0].Do(ctx, "cluster", "meet", host, port, busPorts[i]).Err(); err != nil {
				t.Fatalf("meet: %v", err)
			}
		}
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		ok := 0
		for _, n := range nodes {
			info, _ := n.ClusterInfo(ctx).Result()
			if strings.Contains(info, "cluster_state:ok") && strings.Contains(info, "cluster_known_nodes:3") {
				ok++
			}
		}
		if ok == len(nodes) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cluster did not converge in 20s")
		}
	}

	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs, DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { cc.Close() })
	_, stored := routeSeedBodies(t)
	routeSeed(t, cc, routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
	// Many users, so that their hash tags land on every node.
	const users = 30
	for i := range users {
		id := fmt.Sprintf("clusterUser%02d", i)
		routeSeed(t, cc, id, "tok"+id, map[string]string{"s": fmt.Sprintf(`{"user":%q}`, id)})
	}
	for i, n := range nodes {
		if size, _ := n.DBSize(ctx).Result(); size == 0 {
			t.Errorf("node %s holds no keys: the fixture does not spread over the cluster", addrs[i])
		}
	}

	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, "redis://"+addrs[0]+"/0", "SESSIONGATE_REDIS_CLUSTER_ADDRS", strings.Join(addrs, ",")))
	routeCheckServes(t, g, stored)

	before := routeClusterCalls(t, nodes)
	conn := newRouteConn(t, g.Addr)
	for i := range users {
		id := fmt.Sprintf("clusterUser%02d", i)
		routeCheck(t, id, conn.Do(t, "GET", routePath+"?sessionId=s", routeCreds(id, "tok"+id)...), 200, fmt.Sprintf(`{"user":%q,"success":true}`, id))
	}
	after := routeClusterCalls(t, nodes)
	if got := after["mget"] - before["mget"]; got != users {
		t.Errorf("%d requests made %d MGETs across the cluster, want %d", users, got, users)
	}
	if len(up.Take()) != 0 {
		t.Error("requests were forwarded with the cluster up")
	}
}

func routeClusterCalls(t *testing.T, nodes []*redis.Client) map[string]int {
	t.Helper()
	sum := map[string]int{}
	for _, n := range nodes {
		for cmd, calls := range routeCommandStats(t, n) {
			sum[cmd] += calls
		}
	}
	return sum
}

func TestRouteSentinel(t *testing.T) {
	t.Parallel()
	routeNeedRedisServer(t)
	ctx := context.Background()
	masterPort, replicaPort, sentinelPort := FreePort(t), FreePort(t), FreePort(t)
	// No 5 s wait for more replicas before the first sync.
	startRouteRedisProc(t, masterPort, "--port", strconv.Itoa(masterPort), "--repl-diskless-sync-delay", "0")
	startRouteRedisProc(t, replicaPort, "--port", strconv.Itoa(replicaPort), "--replicaof", "127.0.0.1", strconv.Itoa(masterPort))

	dir := t.TempDir()
	conf := filepath.Join(dir, "sentinel.conf")
	os.WriteFile(conf, []byte(fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nlogfile %s\n"+
		"sentinel monitor mymaster 127.0.0.1 %d 1\nsentinel down-after-milliseconds mymaster 2000\nsentinel failover-timeout mymaster 10000\n",
		sentinelPort, dir, filepath.Join(dir, "redis.log"), masterPort)), 0o600)
	startRouteProc(t, sentinelPort, dir, conf, "--sentinel")

	sentinel := redis.NewSentinelClient(&redis.Options{Addr: routeAddr(sentinelPort), DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { sentinel.Close() })
	master := redis.NewClient(&redis.Options{Addr: routeAddr(masterPort), DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { master.Close() })

	replica := redis.NewClient(&redis.Options{Addr: routeAddr(replicaPort), DisableIdentity: true, Protocol: 2})
	t.Cleanup(func() { replica.Close() })
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		info, _ := replica.Info(ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica not linked to its master in 20s:\n%s", info)
		}
	}
	_, stored := routeSeedBodies(t)
	routeSeed(t, master, routeSeedUser, routeSeedToken, map[string]string{routeSeedSession: stored})
	if n, err := master.Wait(ctx, 1, 10*time.Second).Result(); err != nil || n < 1 {
		t.Fatalf("replica did not catch up: %d, %v", n, err)
	}
	routeWaitMaster(t, sentinel, masterPort)

	up := startRouteUpstream(t)
	g := StartGate(t, routeEnv(up.URL, "redis://127.0.0.1:1/0",
		"SESSIONGATE_REDIS_SENTINEL_ADDRS", routeAddr(sentinelPort), "SESSIONGATE_REDIS_SENTINEL_MASTER", "mymaster"))
	routeCheckServes(t, g, stored)

	// A failover: the route follows the new master (the former replica)
	// without a restart, and meanwhile answers only from Redis or by
	// forwarding. The old master keeps serving reads until Sentinel demotes
	// it, so "followed" means MGETs arrive at the new master.
	before := routeCommandStats(t, replica)["mget"]
	// Sentinel learns of the replica from the master's INFO, a moment
	// after start: until then it has no replica to promote.
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		err := sentinel.Failover(ctx, "mymaster").Err()
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "NOGOODSLAVE") || time.Now().After(deadline) {
			t.Fatalf("SENTINEL FAILOVER: %v", err)
		}
	}
	routeWaitMaster(t, sentinel, replicaPort)
	seed := routeCreds(routeSeedUser, routeSeedToken)
	want := stored[:len(stored)-1] + `,"success":true}`
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		got := routeDo(t, g.Addr, "GET", routePath+"?sessionId="+routeSeedSession, seed...)
		if got.Status != 418 && (got.Status != 200 || got.Body != want) { // 418: forwarded
			t.Fatalf("during failover: %d %s", got.Status, got.Body)
		}
		if got.Status == 200 && routeCommandStats(t, replica)["mget"] > before {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the route did not follow the failover in 20s")
		}
	}
}

// routeWaitMaster waits until the sentinel reports the master on port.
func routeWaitMaster(t *testing.T, s *redis.SentinelClient, port int) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		addr, err := s.GetMasterAddrByName(context.Background(), "mymaster").Result()
		if err == nil && len(addr) == 2 && addr[1] == strconv.Itoa(port) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sentinel does not report the master on :%d: %v %v", port, addr, err)
		}
	}
}
