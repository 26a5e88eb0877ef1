package test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// The real-client rig: the npm libraries Rocket.Chat's clients and server
// are built on, on both sides of the built binary. test/clients/upstream.js
// is the upstream, the `sockjs` server package (what Meteor serves DDP with)
// answering Rocket.Chat-like DDP and a few REST routes; test/clients/
// client.js drives sessiongate with sockjs-client over each of its
// transports, with `ws` on the raw WebSocket endpoint, with Rocket.Chat's
// own SDK (@rocket.chat/ddp-client and its REST client, api-client) and
// with Node's http client. Each client script checks its own conversation and prints a
// JSON report; these tests run them and check the reports.
//
// Node and npm are needed: without them the tests skip with a notice, and
// fail when SESSIONGATE_TEST_REQUIRE_NODE=1 (CI sets it). The packages are
// installed with `npm ci` from test/clients/package-lock.json when
// test/clients/node_modules is missing.

const requireNodeEnv = "SESSIONGATE_TEST_REQUIRE_NODE"

var (
	nodeOnce sync.Once
	nodeErr  string // why the rig cannot run, or ""
)

// needNode skips (or, with SESSIONGATE_TEST_REQUIRE_NODE=1, fails) t when
// node and npm are missing or the client packages cannot be installed.
func needNode(t *testing.T) {
	t.Helper()
	why := nodeMissing()
	if why == "" {
		return
	}
	if os.Getenv(requireNodeEnv) == "1" {
		t.Fatalf("%s (and %s=1)", why, requireNodeEnv)
	}
	notice("NOTE: skipping the real-client tests: " + why)
	t.Skip(why)
}

// nodeMissing says why the Node rig cannot run, or "" when it can: node
// and npm on PATH and test/clients's packages installed (npm ci, once).
func nodeMissing() string {
	nodeOnce.Do(func() {
		for _, bin := range []string{"node", "npm"} {
			if _, err := exec.LookPath(bin); err != nil {
				nodeErr = bin + " not found on PATH; install nodejs and npm to run the real-client tests"
				return
			}
		}
		// npm writes node_modules/.package-lock.json when an install
		// completes: without it the packages are missing or half there.
		if _, err := os.Stat(filepath.Join("clients", "node_modules", ".package-lock.json")); err == nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund")
		cmd.Dir = "clients"
		if out, err := cmd.CombinedOutput(); err != nil {
			nodeErr = "npm ci in test/clients: " + err.Error() + "\n" + string(out)
		}
	})
	return nodeErr
}

// startNodeUpstream runs test/clients/upstream.js with its sockjs
// heartbeat (also how long it holds an idle poll) every heartbeat, and
// returns its URL.
func startNodeUpstream(t *testing.T, heartbeat time.Duration) string {
	t.Helper()
	cmd := exec.Command("node", "upstream.js")
	cmd.Dir = "clients"
	cmd.Env = append(os.Environ(), "HEARTBEAT_MS="+strconv.FormatInt(heartbeat.Milliseconds(), 10))
	var stderr syncBuffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start node upstream: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("node upstream stderr:\n%s", stderr.String())
		}
	})
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if p, ok := strings.CutPrefix(sc.Text(), "listening "); ok {
				port <- p
			}
		}
	}()
	select {
	case p := <-port:
		return "http://127.0.0.1:" + p
	case <-time.After(20 * time.Second):
		t.Fatalf("node upstream did not start in 20s:\n%s", stderr.String())
		return ""
	}
}

// clientReport is what client.js prints last.
type clientReport struct {
	OK         bool    `json:"ok"`
	Error      string  `json:"error"`
	Transport  string  `json:"transport"`
	Session    string  `json:"session"`
	Pong       bool    `json:"pong"`
	Burst      int     `json:"burst"`
	Heartbeats int     `json:"heartbeats"`
	Pings      int     `json:"pings"`
	AfterIdle  bool    `json:"afterIdle"`
	BigFrame   bool    `json:"bigFrame"`
	Slow       int     `json:"slow"`
	Conns      int     `json:"connections"`
	Status     string  `json:"status"`
	Calls      int     `json:"calls"`
	REST       bool    `json:"rest"`
	Seconds    float64 `json:"seconds"`
}

// nodeRun is one of test/clients's scripts running under node.
type nodeRun struct {
	args           []string
	stdout, stderr bytes.Buffer
	err            error
	done           chan struct{}
}

// startNode starts node with args in test/clients, for at most timeout;
// it is stopped at t's cleanup if still running.
func startNode(t *testing.T, timeout time.Duration, args ...string) *nodeRun {
	r := &nodeRun{args: args, done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	go func() {
		defer close(r.done)
		cmd := exec.CommandContext(ctx, "node", args...)
		cmd.Dir = "clients"
		cmd.Stdout, cmd.Stderr = &r.stdout, &r.stderr
		r.err = cmd.Run()
	}()
	return r
}

// nodeReport is a script's report: whether it passed, and if not, why.
type nodeReport interface{ passed() (ok bool, why string) }

// wait waits for the script and decodes its report, the last line it
// printed and which it returns, into rep; a script that did not pass
// fails t with its own words.
func (r *nodeRun) wait(t *testing.T, rep nodeReport) string {
	t.Helper()
	<-r.done
	lines := strings.Split(strings.TrimSpace(r.stdout.String()), "\n")
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), rep); err != nil {
		t.Fatalf("%v: no report (%v, exit %v)\nstdout:\n%s\nstderr:\n%s", r.args, err, r.err, r.stdout.String(), r.stderr.String())
	}
	if ok, why := rep.passed(); !ok || r.err != nil {
		t.Fatalf("%v failed (exit %v): %s\nstderr:\n%s", r.args, r.err, why, r.stderr.String())
	}
	return lines[len(lines)-1]
}

func (r *clientReport) passed() (bool, string) { return r.OK, r.Error }

// startClient starts client.js with args; clientResult waits for it.
func startClient(t *testing.T, args ...string) *nodeRun {
	return startNode(t, 2*time.Minute, append([]string{"client.js"}, args...)...)
}

// clientResult waits for a client and returns its report.
func clientResult(t *testing.T, r *nodeRun) clientReport {
	t.Helper()
	var rep clientReport
	line := r.wait(t, &rep)
	t.Logf("client %v: %s\n%s", r.args[1], line, r.stderr.String())
	return rep
}

// realClientPaths are the request paths to test: the one
// SESSIONGATE_TEST_EVENT_LOOP names, or both.
func realClientPaths() []string {
	if v, ok := os.LookupEnv("SESSIONGATE_TEST_EVENT_LOOP"); ok {
		return []string{v}
	}
	return []string{"true", "false"}
}

// TestRealClients: Rocket.Chat's client libraries through sessiongate to
// a sockjs server. Every client stays 27 s on its connection with nothing
// to say: sockjs holds an xhr-polling request and keeps an xhr-streaming
// response silent for 25 s before its heartbeat, as Rocket.Chat does, and
// both must come through; the REST client waits 12 s for an answer, longer
// than proxy.read_header_timeout.
func TestRealClients(t *testing.T) {
	needNode(t)
	up := startNodeUpstream(t, 25*time.Second)
	r := StartRedis(t)
	const idle = "27000"
	// Every client is started here, at once, and each subtest waits for
	// its own: as parallel subtests they would queue behind the rest of
	// the suite before starting their half-minute conversations.
	type client struct {
		name  string
		run   *nodeRun
		check func(t *testing.T, rep clientReport)
	}
	clients := map[string][]client{}
	for _, loop := range realClientPaths() {
		env := GateEnv(up, r.URL())
		env["SESSIONGATE_PROXY_EVENT_LOOP"] = loop
		env["SESSIONGATE_LOG_ACCESS"] = "false"
		env["SESSIONGATE_LOG_LEVEL"] = "info"
		g := StartGate(t, env)
		for _, transport := range []string{"websocket", "xhr-streaming", "xhr-polling"} {
			clients[loop] = append(clients[loop], client{"sockjs-client/" + transport, startClient(t, "sockjs", g.URL, transport, idle), func(t *testing.T, rep clientReport) {
				if rep.Transport != transport || rep.Session != "x" || !rep.Pong || rep.Burst == 0 || !rep.AfterIdle {
					t.Errorf("report: got %+v, want transport %s, DDP connected, pong, burst and a call after the idle time", rep, transport)
				}
				// On a WebSocket the heartbeat is a ping frame,
				// which sockjs-client does not report.
				if transport != "websocket" && rep.Heartbeats < 1 {
					t.Errorf("heartbeats: got %d, want the upstream's 25 s heartbeat to reach the client", rep.Heartbeats)
				}
			}})
		}
		clients[loop] = append(clients[loop], client{"ws/ddp", startClient(t, "ws", g.URL, idle), func(t *testing.T, rep clientReport) {
			if rep.Session != "x" || !rep.Pong || rep.Burst == 0 || !rep.AfterIdle || !rep.BigFrame {
				t.Errorf("report: got %+v, want DDP connected, pong, burst, a call after the idle time and a 1 MB frame", rep)
			}
			if rep.Pings < 1 {
				t.Errorf("DDP pings: got %d, want the upstream's ping after 25 s to reach the client", rep.Pings)
			}
		}})
		clients[loop] = append(clients[loop], client{"rocketchat-sdk", startClient(t, "rocketchat", g.URL, "12000"), func(t *testing.T, rep clientReport) {
			if rep.Status != "connected" || rep.Calls != 21 || !rep.REST || rep.Slow != 12000 {
				t.Errorf("report: got %+v, want DDP connected, 21 method results, REST answers and the 12 s answer", rep)
			}
		}})
		clients[loop] = append(clients[loop], client{"http/rest", startClient(t, "rest", g.URL, "12000"), func(t *testing.T, rep clientReport) {
			if rep.Slow != 12000 || rep.Conns != 1 {
				t.Errorf("report: got %+v, want the 12 s answer on one kept-alive connection", rep)
			}
		}})
	}
	// Only now is the test parallel: its clients are already on their
	// half-minute conversations, instead of waiting with it for a free
	// slot behind the rest of the suite.
	t.Parallel()
	for _, loop := range realClientPaths() {
		t.Run("event_loop="+loop, func(t *testing.T) {
			for _, c := range clients[loop] {
				t.Run(c.name, func(t *testing.T) {
					c.check(t, clientResult(t, c.run))
				})
			}
		})
	}
}
