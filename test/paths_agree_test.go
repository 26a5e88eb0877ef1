package test

// A differential test of the two request paths (proxy/internal/loop):
// the same raw bytes go to a gate with the event loop and to a gate without
// it (SESSIONGATE_PROXY_EVENT_LOOP=false, the fasthttp path for
// everything), both in front of one recording upstream, and what each
// client received and what the upstream received from each gate must agree.
//
// TestPathsAgree runs the seed corpus in every test run; FuzzPathsAgree is
// the same check as a Go fuzz target:
//
//	go test ./test -run '^$' -fuzz '^FuzzPathsAgree$' -fuzztime 60s
//
// Agreement proves nothing if the loop gate handed everything to the
// fasthttp path (or never started its loops): TestPathsAgree fails unless
// that gate's sessiongate_event_loop_requests_total shows it answered the
// bulk of the seeds on the loop, and FuzzPathsAgree unless it answers a
// probe there. Both skip, loudly, off Linux, where there is no event loop.
//
// As with FuzzRawRequest the gates are separate processes, so the engine
// mutates blindly. Each input is sent twice to each gate, on a fresh
// connection every time: once written and left open until the gate has
// been silent for agreeSilence, then half-closed (a keep-alive client that
// is done); once written and half-closed at once (a client that sends its
// requests and shuts its side, as fuzzExchange does).
//
// Normalized before comparing, because it legitimately differs:
//   - response header order (the fasthttp path moves Server, Content-Type,
//     Content-Encoding and Content-Length first and Set-Cookie last), so
//     response fields compare as a multiset;
//   - Date on responses (the gates' own answers carry the current time);
//   - chunk sizes of chunked response bodies (each path chunks what one
//     read brought), so bodies compare de-chunked;
//   - the upstream's address in a Host field the gate added to a request
//     that came without one: each gate talks to the recorder on its own
//     port, so the recordings can be told apart.
//
// Besides what the requests ask, the recording upstream misbehaves on
// demand, by path segment: /stray/, /nobodystray/ and /chunkedstray/
// answers carry a whole stray answer past their end (which must never
// answer the next request), and /slow/ answers come after the gates'
// proxy.read_header_timeout (and must still arrive).
//
// Reset versus orderly close of the client connection is shown in a
// divergence report but not compared: it depends on whether the gate had
// read all the input when it closed, i.e. on buffer sizes.
//
// The divergences this found are kept as seeds (agreeSeeds, and the
// inputs the engine found in testdata/fuzz/FuzzPathsAgree, which
// FuzzPathsAgree runs without -fuzz too): a client half-closing after its
// requests, "Expect: 100-continue", a malformed Host, and heads or bodies
// cut short were answered differently by the loop until it handed those to
// the fasthttp path or waited for the answer as it does.
//
//	go test ./test -run '^$' -fuzz '^FuzzPathsAgree$' -fuzztime 60s

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// agreeSilence is how long a gate may stay silent before the client
// decides it has answered everything it will (the recording upstream
// answers at once, and every timeout of the gates is far longer).
const agreeSilence = 500 * time.Millisecond

// agreeSlow is how long the upstream holds a request for a /slow/ path:
// past the gates' proxy.read_header_timeout (2 s), within their
// upstream.response_header_timeout (3 s). A client of such a request waits
// agreeSlowSilence for the gate to answer.
const (
	agreeSlow        = 2300 * time.Millisecond
	agreeSlowSilence = 4 * time.Second
)

// agreeSettle is how long after an exchange the upstream's recording is
// taken.
const agreeSettle = 50 * time.Millisecond

// agreeMaxInput bounds a fuzzed input, well within what either path reads
// at once (proxy.max_header_bytes, 16 KiB, on the fasthttp path): a gate
// that closes with input unread has the kernel reset the connection, which
// can discard the answer in flight, on one path and not the other.
const agreeMaxInput = 8 << 10

// agreeSeeds is the seed corpus: fuzzCorpus plus the cases where the two
// paths are most likely to part ways.
func agreeSeeds() [][]byte {
	seeds := fuzzCorpus()
	for _, s := range []string{
		// Pipelined GETs, the framings of the recorder's answers.
		"GET /cl/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /chunked/2 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/3 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /close/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /clclose/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /hints/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /nobody/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /big/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		// A GET with a Content-Length body, a POST with a body.
		"GET /cl/get-with-body HTTP/1.1\r\nHost: chat.example\r\nContent-Length: 5\r\n\r\nhello",
		"POST /cl/post HTTP/1.1\r\nHost: chat.example\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world",
		"POST /chunked/post HTTP/1.1\r\nHost: chat.example\r\nContent-Length: 3\r\n\r\nabcGET /cl/after HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		// A body shorter than its Content-Length.
		"POST /cl/short HTTP/1.1\r\nHost: chat.example\r\nContent-Length: 100\r\n\r\nhello",
		// HEAD, whatever framing the answer would have had.
		"HEAD /cl/h HTTP/1.1\r\nHost: chat.example\r\n\r\nHEAD /chunked/h HTTP/1.1\r\nHost: chat.example\r\n\r\nHEAD /big/h HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/after-head HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"HEAD /close/h HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		// HTTP/1.0, with and without Host and keep-alive.
		"GET /cl/10 HTTP/1.0\r\n\r\n",
		"GET /chunked/10 HTTP/1.0\r\nHost: chat.example\r\n\r\n",
		"GET /cl/10ka HTTP/1.0\r\nHost: chat.example\r\nConnection: keep-alive\r\n\r\nGET /chunked/10ka HTTP/1.0\r\nHost: chat.example\r\nConnection: keep-alive\r\n\r\n",
		"POST /cl/10post HTTP/1.0\r\nHost: chat.example\r\nContent-Length: 2\r\n\r\nhi",
		// Hostile heads: refused the same way.
		"GET /cl/fold HTTP/1.1\r\nHost: chat.example\r\nX-Folded: a\r\n b\r\n\r\n",
		"POST /cl/dup-cl HTTP/1.1\r\nHost: chat.example\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		"POST /cl/cl-te HTTP/1.1\r\nHost: chat.example\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		// Expect: 100-continue with the body already sent, and without one.
		"POST /cl/expect HTTP/1.1\r\nHost: chat.example\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
		"GET /cl/expect-nobody HTTP/1.1\r\nHost: chat.example\r\nExpect: 100-continue\r\n\r\n",
		// Hop-by-hop and client-address fields.
		"GET /cl/hop HTTP/1.1\r\nHost: chat.example\r\nConnection: keep-alive, X-Drop\r\nX-Drop: 1\r\nKeep-Alive: timeout=5\r\nX-Forwarded-For: 10.0.0.1\r\nX-Real-IP: 10.0.0.2\r\nX-Forwarded-Proto: https\r\nTE: trailers\r\n\r\n",
		// An incomplete head, and a malformed request line whose head
		// has not ended.
		"GET /cl/incomplete HTTP/1.1\r\nHost: chat.exa",
		"0\r\nHost: chat.example\r\n",
		// A malformed host: in Host, in an absolute-form target.
		"GET /cl/host HTTP/1.1\r\nHost: chat example\r\n\r\n",
		"GET http://chat.example:http/cl/abs HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		// A misbehaving upstream: bytes past the end of its answer
		// (past Content-Length, after a 204, after the last chunk,
		// after an answer to HEAD) must not answer the next request.
		"GET /stray/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /nobodystray/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /chunkedstray/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /chunked/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"HEAD /stray/h HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/after-head HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		// The intercepted route answered on the loop, with requests
		// pipelined behind it; a route request asking to close; one
		// with a body or Expect (handed over on the loop gate).
		"GET /api/v1/sessions/info?sessionId=" + fuzzLogin.SessionID + " HTTP/1.1\r\nHost: chat.example\r\nX-User-Id: " + fuzzLogin.UserID + "\r\nX-Auth-Token: " + fuzzLogin.Token + "\r\n\r\nGET /chunked/2 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /api/v1/sessions/info HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/4 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /api/v1/sessions/info?sessionId=" + fuzzLogin.SessionID + " HTTP/1.1\r\nHost: chat.example\r\nConnection: close\r\nX-User-Id: " + fuzzLogin.UserID + "\r\nX-Auth-Token: " + fuzzLogin.Token + "\r\n\r\nGET /cl/after-close HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /api/v1/sessions/info?sessionId=" + fuzzLogin.SessionID + " HTTP/1.1\r\nHost: chat.example\r\nContent-Length: 3\r\nX-User-Id: " + fuzzLogin.UserID + "\r\nX-Auth-Token: " + fuzzLogin.Token + "\r\n\r\nabcGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"GET /api/v1/sessions/info HTTP/1.1\r\nHost: chat.example\r\nExpect: 100-continue\r\n\r\nGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		// A route request the route declines (a byte Node refuses):
		// forwarded, by the loop on the loop gate.
		"GET /api/v1/sessions/info?sessionId=\xff HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		// A slow upstream: answers after proxy.read_header_timeout has
		// passed (within upstream.response_header_timeout).
		"GET /slow/1 HTTP/1.1\r\nHost: chat.example\r\n\r\nGET /cl/2 HTTP/1.1\r\nHost: chat.example\r\n\r\n",
		"POST /slow/post HTTP/1.1\r\nHost: chat.example\r\nContent-Length: 5\r\n\r\nhello",
	} {
		seeds = append(seeds, []byte(s))
	}
	return seeds
}

func TestPathsAgree(t *testing.T) {
	t.Parallel()
	agreeRequireLinux(t)
	// The seeds are shared out among rigs that run at once: most of an
	// exchange is the client waiting out agreeSilence, so one rig taking
	// every seed in turn would spend its time idle. A rig takes one
	// exchange at a time, as the upstream's recording belongs to it.
	seeds := agreeSeeds()
	var mu sync.Mutex
	var served, forwarded, offLoop float64
	t.Run("seeds", func(t *testing.T) {
		for shard := range agreeShards {
			t.Run(fmt.Sprintf("%d of %d", shard+1, agreeShards), func(t *testing.T) {
				t.Parallel()
				rig := startAgreeRig(t)
				before := rig.loopRequests()
				for i := shard; i < len(seeds); i += agreeShards {
					if err := rig.check(seeds[i]); err != nil {
						t.Errorf("seed %d: %v", i, err)
					}
				}
				rig.checkAlive(t)
				after := rig.loopRequests()
				fwd := rig.gates[0].Metric(`sessiongate_requests_total{class="forward",`)
				if fwd < 0 {
					t.Errorf("the event-loop gate has no sessiongate_requests_total{class=\"forward\"} sample")
				}
				mu.Lock()
				served += after[0] - before[0]
				offLoop += after[1]
				forwarded += fwd
				mu.Unlock()
			})
		}
	})
	// Most seeds are plain requests the loop serves itself; if it handed
	// them all over (or never started), the paths agreed trivially.
	t.Logf("the event loop answered %v of the seeds' requests itself", served)
	if served < agreeMinLoopServed {
		t.Errorf("the event loop answered only %v of the seeds' requests itself (sessiongate_event_loop_requests_total), want at least %d: it did not serve what it should, so the comparison proves nothing", served, agreeMinLoopServed)
	}
	if forwarded <= 0 {
		t.Errorf("the event-loop gates counted no forwarded requests")
	}
	if offLoop != 0 {
		t.Errorf("the gates with proxy.event_loop=false counted %v requests answered by an event loop", offLoop)
	}
}

// agreeShards is how many rigs TestPathsAgree shares the seeds among.
const agreeShards = 4

// agreeMinLoopServed is a floor on the requests of agreeSeeds that the
// event loop answers itself: the plain GETs, HEADs and Content-Length
// POSTs among them, each sent twice, come to well over this (75 when
// this was written).
const agreeMinLoopServed = 40

// agreeRequireLinux skips tb off Linux, where there is no event loop: both
// gates would run the fasthttp path and agree trivially.
func agreeRequireLinux(tb testing.TB) {
	tb.Helper()
	if runtime.GOOS != "linux" {
		msg := "SKIPPED: linux only: the paths-agree differential test needs the event loop, which exists only on Linux (GOOS=" + runtime.GOOS + ")"
		notice(msg)
		tb.Skip(msg)
	}
}

// loopRequests returns sessiongate_event_loop_requests_total of both
// gates.
func (rig *agreeRig) loopRequests() [2]float64 {
	var n [2]float64
	for i, g := range rig.gates {
		n[i] = g.Metric("sessiongate_event_loop_requests_total ")
	}
	return n
}

// requireLoopServes fails tb unless the event-loop gate answers a plain GET
// on its loop: a rig whose loop gate hands everything to the fasthttp path
// compares the fasthttp path with itself.
func (rig *agreeRig) requireLoopServes(tb testing.TB) {
	tb.Helper()
	before := rig.loopRequests()
	if err := rig.check([]byte("GET /cl/loop-probe HTTP/1.1\r\nHost: chat.example\r\n\r\n")); err != nil {
		tb.Fatalf("probe: %v", err)
	}
	after := rig.loopRequests()
	// check sends the probe twice to each gate.
	if d := after[0] - before[0]; d != 2 {
		tb.Fatalf("the event-loop gate answered %v of 2 plain GETs on its loop (sessiongate_event_loop_requests_total): the loop is not serving", d)
	}
	if after[1] != 0 {
		tb.Fatalf("the gate with proxy.event_loop=false counted %v requests answered by an event loop", after[1])
	}
}

func FuzzPathsAgree(f *testing.F) {
	agreeRequireLinux(f)
	rig := startAgreeRig(f)
	rig.requireLoopServes(f)
	if agreeFuzzing() {
		// Without -fuzz, TestPathsAgree runs these; the corpus in
		// testdata/fuzz/FuzzPathsAgree runs here either way. With
		// -short they are left out: the engine first
		// runs every seed for its baseline coverage, several minutes
		// for these on a small machine, before -fuzztime starts.
		if !testing.Short() {
			for _, in := range agreeSeeds() {
				f.Add(in)
			}
		}
		// An input takes over half a second, and the engine spends
		// up to -fuzzminimizetime (60 s by default) minimizing every
		// input that reached new code of this package's parsers: cap
		// it, unless the command line set it.
		set := false
		flag.Visit(func(fl *flag.Flag) { set = set || fl.Name == "test.fuzzminimizetime" })
		if !set {
			flag.Set("test.fuzzminimizetime", "20x")
		}
	}
	f.Fuzz(func(t *testing.T, input []byte) {
		if len(input) > agreeMaxInput {
			return
		}
		if err := rig.check(input); err != nil {
			t.Fatal(err)
		}
		rig.checkAlive(t)
	})
}

// agreeFuzzing reports whether the test binary runs with -fuzz.
func agreeFuzzing() bool {
	fl := flag.Lookup("test.fuzz")
	return fl != nil && fl.Value.String() != ""
}

// agreeRig is one recording upstream and two gates in front of it: 0 with
// the event loop, 1 without.
type agreeRig struct {
	up    *agreeUpstream
	gates [2]*Gate
}

var agreePathNames = [2]string{"event loop", "fasthttp path"}

func startAgreeRig(tb testing.TB) *agreeRig {
	tb.Helper()
	up := startAgreeUpstream(tb)
	r := StartRedis(tb)
	hostileSeed(tb, r.Client(), fuzzLogin)
	rig := &agreeRig{up: up}
	for i, loop := range []string{"true", "false"} {
		// startFuzzGate's settings, on the recorder's port for this gate.
		env := GateEnv("http://"+up.lns[i].Addr().String(), r.URL())
		env["SESSIONGATE_LOG_LEVEL"] = "info"
		env["SESSIONGATE_LOG_ACCESS"] = "false"
		env["SESSIONGATE_PROXY_READ_HEADER_TIMEOUT"] = "2s"
		env["SESSIONGATE_UPSTREAM_RESPONSE_HEADER_TIMEOUT"] = "3s"
		env["SESSIONGATE_PROXY_EVENT_LOOP"] = loop
		rig.gates[i] = StartGate(tb, env)
	}
	return rig
}

// checkAlive fails t if a gate has exited.
func (rig *agreeRig) checkAlive(t testing.TB) {
	t.Helper()
	for i, g := range rig.gates {
		select {
		case <-g.exited:
			t.Fatalf("the gate with the %s exited (%v):\n%s", agreePathNames[i], g.exitState, g.Logs())
		default:
		}
	}
}

// agreeSide is what one gate did with one input.
type agreeSide struct {
	out  []byte       // every byte the client received
	end  string       // how the connection ended
	reqs []agreeUpReq // what the upstream received from the gate
}

// check sends input to both gates in both client manners and returns the
// first divergence, described in full.
func (rig *agreeRig) check(input []byte) error {
	for _, halfClose := range []bool{false, true} {
		var sides [2]agreeSide
		var wg sync.WaitGroup
		for i := range rig.gates {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sides[i].out, sides[i].end = agreeExchange(rig.gates[i].Addr, input, halfClose)
				sides[i].reqs = rig.up.take(i)
			}()
		}
		wg.Wait()
		if diff := agreeCompare(input, halfClose, sides, rig.up); diff != "" {
			manner := "written, then half-closed after " + agreeSilence.String() + " of silence"
			if halfClose {
				manner = "written and half-closed at once"
			}
			var b strings.Builder
			fmt.Fprintf(&b, "the paths disagree: %s\ninput (%s): %q", diff, manner, fuzzShort(input))
			for i, s := range sides {
				fmt.Fprintf(&b, "\n--- %s: connection %s; client received %q", agreePathNames[i], s.end, fuzzShort(s.out))
				for j, r := range s.reqs {
					fmt.Fprintf(&b, "\n    upstream request %d (upstream connection %d): %q", j, r.conn, fuzzShort(r.raw))
					if r.err != "" {
						fmt.Fprintf(&b, " [incomplete: %s]", r.err)
					}
				}
			}
			return errors.New(b.String())
		}
	}
	return nil
}

// agreeExchange sends input on a fresh connection to addr and returns every
// byte received and how the connection ended. With halfClose the client
// shuts its side right after writing; without, once the gate has been
// silent for agreeSilence. Either way it reads on until the gate closes or
// is silent for agreeSilence after the half-close.
func agreeExchange(addr string, input []byte, halfClose bool) ([]byte, string) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, "not connected: " + err.Error()
	}
	defer c.Close()
	silence := agreeSilence
	if bytes.Contains(input, []byte("/slow/")) {
		silence = agreeSlowSilence
	}
	c.Write(input) // the gate may close before reading it all: not an error
	shut := func() { c.(*net.TCPConn).CloseWrite() }
	if halfClose {
		shut()
	}
	var out []byte
	buf := make([]byte, 64<<10)
	hardStop := time.Now().Add(15 * time.Second)
	for {
		c.SetReadDeadline(time.Now().Add(silence))
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		var ne net.Error
		switch {
		case err == nil:
			if time.Now().After(hardStop) {
				return out, "still sending after 15 s"
			}
			continue
		case errors.As(err, &ne) && ne.Timeout():
			if halfClose {
				return out, "left open after the client's half-close"
			}
			halfClose = true
			shut()
			continue
		}
		phase := "closed by the gate"
		if halfClose {
			phase = "closed after the client's half-close"
		}
		if errors.Is(err, syscall.ECONNRESET) {
			return out, phase + " (reset)"
		}
		if err == io.EOF {
			return out, phase
		}
		return out, phase + " (" + err.Error() + ")"
	}
}

// agreeCompare returns how the two sides differ after normalization, or "".
func agreeCompare(input []byte, halfClose bool, sides [2]agreeSide, up *agreeUpstream) string {
	// The client side.
	methods := agreeMethods(input)
	var resps [2][]agreeResp
	for i, s := range sides {
		resps[i] = agreeParseResponses(s.out, methods)
	}
	reqs := [2][]agreeUpReq{sides[0].reqs, sides[1].reqs}
	if len(resps[0]) != len(resps[1]) {
		return fmt.Sprintf("the client received %d responses from the %s and %d from the %s",
			len(resps[0]), agreePathNames[0], len(resps[1]), agreePathNames[1])
	}
	for j := range resps[0] {
		if a, b := resps[0][j].String(), resps[1][j].String(); a != b {
			return fmt.Sprintf("response %d differs:\n    %s: %s\n    %s: %s", j, agreePathNames[0], a, agreePathNames[1], b)
		}
	}
	if a, b := agreeClosed(sides[0].end), agreeClosed(sides[1].end); a != b {
		return fmt.Sprintf("the connection was %s by the %s and %s by the %s", a, agreePathNames[0], b, agreePathNames[1])
	}

	// The upstream side.
	if len(reqs[0]) != len(reqs[1]) {
		return fmt.Sprintf("the upstream received %d requests from the %s and %d from the %s",
			len(reqs[0]), agreePathNames[0], len(reqs[1]), agreePathNames[1])
	}
	for j := range reqs[0] {
		a := reqs[0][j].normalized(up.authority(0))
		b := reqs[1][j].normalized(up.authority(1))
		if a != b {
			return fmt.Sprintf("upstream request %d differs:\n    %s: %s\n    %s: %s", j, agreePathNames[0], a, agreePathNames[1], b)
		}
	}
	return ""
}

// agreeClosed is the compared part of how a connection ended: closed (by
// FIN or reset) before or after the client's half-close, or left open.
func agreeClosed(end string) string {
	end, _, _ = strings.Cut(end, " (")
	return end
}

// agreeMethods returns the methods of the requests in input, as far as
// net/http can parse them, so each response is read knowing whether it
// answers a HEAD.
func agreeMethods(input []byte) []string {
	br := bufio.NewReader(bytes.NewReader(input))
	var methods []string
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return methods
		}
		methods = append(methods, req.Method)
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return methods
		}
	}
}

// agreeResp is one response as a client sees it, normalized: header fields
// sorted, Date left out, the body de-chunked.
type agreeResp struct {
	code    int
	status  string
	proto   string
	header  []string
	framing string
	body    []byte
	err     string // the response or its body did not parse
	rest    []byte // unparsed bytes from here on
}

func (r agreeResp) String() string {
	s := fmt.Sprintf("%s %q %s [%s] body %q", r.proto, r.status, r.framing, strings.Join(r.header, " | "), fuzzShort(r.body))
	if r.err != "" {
		s += fmt.Sprintf(" error %q", r.err)
	}
	if len(r.rest) > 0 {
		s += fmt.Sprintf(" then %q", fuzzShort(r.rest))
	}
	return s
}

// agreeParseResponses parses everything a client received into responses,
// the i-th final one answering methods[i] (GET past the end).
func agreeParseResponses(out []byte, methods []string) []agreeResp {
	br := bufio.NewReader(bytes.NewReader(out))
	var resps []agreeResp
	final := 0
	for {
		if _, err := br.Peek(1); err != nil {
			return resps
		}
		method := "GET"
		if final < len(methods) {
			method = methods[final]
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			rest, _ := br.Peek(br.Buffered())
			return append(resps, agreeResp{err: err.Error(), rest: rest})
		}
		r := agreeResp{
			code:    resp.StatusCode,
			status:  resp.Status,
			proto:   resp.Proto,
			framing: fmt.Sprintf("te=%v cl=%d close=%v", resp.TransferEncoding, resp.ContentLength, resp.Close),
		}
		for name, values := range resp.Header {
			if name == "Date" {
				continue
			}
			for _, v := range values {
				r.header = append(r.header, name+": "+v)
			}
		}
		slices.Sort(r.header)
		if resp.StatusCode == http.StatusSwitchingProtocols {
			r.rest, _ = io.ReadAll(br) // a tunnel: what follows is not HTTP
			return append(resps, r)
		}
		r.body, err = io.ReadAll(resp.Body)
		if err != nil {
			r.err = "body: " + err.Error()
			return append(resps, r)
		}
		resps = append(resps, r)
		if resp.StatusCode >= 200 {
			final++
		}
	}
}

// agreeUpstream is the recording upstream: a raw HTTP/1.1 server on two
// loopback ports, one per gate, that records the exact bytes of every
// request on each and answers deterministically (agreeAnswer).
type agreeUpstream struct {
	lns [2]net.Listener

	mu       sync.Mutex
	cond     *sync.Cond
	reqs     [2][]agreeUpReq
	inflight [2]int // connections in the middle of receiving a request
	conns    int
	open     map[net.Conn]struct{}
	closed   bool
}

// agreeUpReq is one request as the upstream received it.
type agreeUpReq struct {
	conn    int    // which upstream connection, in order of acceptance
	raw     []byte // the exact bytes
	line    string // the request line
	headers []string
	body    []byte // de-chunked
	err     string // received incomplete or malformed
}

// normalized is the compared form of r: the request line, the header
// fields in order, the body and whether it was complete, with the
// upstream's authority (which differs between the gates' recorder ports)
// in Host replaced.
func (r agreeUpReq) normalized(authority string) string {
	hs := make([]string, len(r.headers))
	for i, h := range r.headers {
		name, value, _ := strings.Cut(h, ":")
		if strings.EqualFold(name, "Host") && strings.TrimSpace(value) == authority {
			h = name + ": <upstream>"
		}
		hs[i] = h
	}
	s := fmt.Sprintf("%q [%s] body %q", r.line, strings.Join(hs, " | "), fuzzShort(r.body))
	if r.err != "" {
		s += " incomplete: " + r.err
	}
	return s
}

func startAgreeUpstream(tb testing.TB) *agreeUpstream {
	tb.Helper()
	u := &agreeUpstream{open: map[net.Conn]struct{}{}}
	u.cond = sync.NewCond(&u.mu)
	for i := range u.lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		u.lns[i] = ln
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				u.mu.Lock()
				if u.closed {
					u.mu.Unlock()
					c.Close()
					return
				}
				u.conns++
				id := u.conns
				u.open[c] = struct{}{}
				u.mu.Unlock()
				go u.serve(i, id, c)
			}
		}()
	}
	tb.Cleanup(func() {
		u.mu.Lock()
		u.closed = true
		for c := range u.open {
			c.Close()
		}
		u.mu.Unlock()
		for _, ln := range u.lns {
			ln.Close()
		}
	})
	return u
}

// authority is the host:port gate i has the upstream at.
func (u *agreeUpstream) authority(i int) string { return u.lns[i].Addr().String() }

// take returns and forgets the requests received from gate i. It first
// lets agreeSettle pass (a gate may have sent a request just before it
// closed the client's connection: the bytes may still be on their way to
// the reader), then waits (briefly) for a request being received.
func (u *agreeUpstream) take(i int) []agreeUpReq {
	time.Sleep(agreeSettle)
	deadline := time.Now().Add(agreeSilence)
	stop := time.AfterFunc(agreeSilence, func() {
		u.mu.Lock()
		u.cond.Broadcast()
		u.mu.Unlock()
	})
	defer stop.Stop()
	u.mu.Lock()
	defer u.mu.Unlock()
	for u.inflight[i] > 0 && time.Now().Before(deadline) {
		u.cond.Wait()
	}
	reqs := u.reqs[i]
	u.reqs[i] = nil
	return reqs
}

// agreeTap keeps every byte read through it.
type agreeTap struct {
	r   io.Reader
	all []byte
}

func (t *agreeTap) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.all = append(t.all, p[:n]...)
	return n, err
}

// serve reads requests from gate i on c and answers each.
func (u *agreeUpstream) serve(i, id int, c net.Conn) {
	defer func() {
		c.Close()
		u.mu.Lock()
		delete(u.open, c)
		u.mu.Unlock()
	}()
	tap := &agreeTap{r: c}
	br := bufio.NewReader(tap)
	for {
		if _, err := br.Peek(1); err != nil {
			return
		}
		u.mu.Lock()
		u.inflight[i]++
		u.mu.Unlock()
		start := len(tap.all) - br.Buffered()
		req := agreeReadRequest(br)
		req.conn = id
		req.raw = bytes.Clone(tap.all[start : len(tap.all)-br.Buffered()])
		u.mu.Lock()
		u.reqs[i] = append(u.reqs[i], req)
		u.inflight[i]--
		u.cond.Broadcast()
		u.mu.Unlock()
		if req.err != "" {
			return
		}
		answer, closeAfter := agreeAnswer(req)
		if _, err := c.Write(answer); err != nil || closeAfter {
			return
		}
	}
}

// agreeReadRequest reads one request from br: head and body (by
// Content-Length, or chunked).
func agreeReadRequest(br *bufio.Reader) agreeUpReq {
	var r agreeUpReq
	line, err := br.ReadString('\n')
	if err != nil {
		r.err = "request line: " + err.Error()
		return r
	}
	r.line = strings.TrimSuffix(line, "\r\n")
	length, chunked := int64(0), false
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			r.err = "head: " + err.Error()
			return r
		}
		if line == "\r\n" {
			break
		}
		h := strings.TrimSuffix(line, "\r\n")
		r.headers = append(r.headers, h)
		name, value, _ := strings.Cut(h, ":")
		value = strings.TrimSpace(value)
		switch {
		case strings.EqualFold(name, "Transfer-Encoding"):
			chunked = strings.EqualFold(value, "chunked")
		case strings.EqualFold(name, "Content-Length"):
			if length, err = strconv.ParseInt(value, 10, 64); err != nil || length < 0 {
				r.err = "Content-Length " + strconv.Quote(value)
				return r
			}
		}
	}
	if !chunked {
		r.body = make([]byte, min(length, 1<<20))
		n, err := io.ReadFull(br, r.body)
		r.body = r.body[:n]
		if err != nil {
			r.err = "body: " + err.Error()
		}
		return r
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			r.err = "chunk size: " + err.Error()
			return r
		}
		hex, _, _ := strings.Cut(strings.TrimSuffix(line, "\r\n"), ";")
		n, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 31)
		if err != nil {
			r.err = "chunk size " + strconv.Quote(line)
			return r
		}
		if n == 0 {
			for { // trailers, up to the empty line
				line, err := br.ReadString('\n')
				if err != nil {
					r.err = "trailer: " + err.Error()
					return r
				}
				if line == "\r\n" {
					return r
				}
				r.headers = append(r.headers, "trailer "+strings.TrimSuffix(line, "\r\n"))
			}
		}
		data := make([]byte, n+2)
		if _, err := io.ReadFull(br, data); err != nil {
			r.err = "chunk data: " + err.Error()
			return r
		}
		if string(data[n:]) != "\r\n" {
			r.err = "chunk not ended by CRLF"
			return r
		}
		r.body = append(r.body, data[:n]...)
	}
}

// agreeAnswer is the upstream's answer to r, derived from its request line
// and body, and whether the connection closes after it. A path segment
// picks the answer's framing; otherwise a hash of the request line does.
func agreeAnswer(r agreeUpReq) ([]byte, bool) {
	method, rest, _ := strings.Cut(r.line, " ")
	target, _, _ := strings.Cut(rest, " ")
	sum := crc32.ChecksumIEEE([]byte(r.line))
	body := fmt.Sprintf("%s %s %d %08x\n", method, target, len(r.body), crc32.ChecksumIEEE(r.body))

	modes := []string{"cl", "chunked", "close", "clclose", "nobody", "hints"}
	mode := modes[sum%uint32(len(modes))]
	// Chosen by path only: a misbehaving upstream, a slow one.
	for _, m := range append(modes, "big", "stray", "nobodystray", "chunkedstray", "slow") {
		if strings.Contains(target, "/"+m+"/") {
			mode = m
			break
		}
	}
	if mode == "big" {
		// Past maxBufferedBody: streamed, not read whole.
		body = strings.Repeat(body, 100<<10/len(body)+1)
	}
	// stray is what a misbehaving upstream sends past the end of its
	// answer: itself a whole answer, so a gate that reused the connection
	// would give it to the next request.
	stray := ""
	switch mode {
	case "stray", "nobodystray", "chunkedstray":
		stray = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nSTRAY!"
		mode = strings.TrimSuffix(mode, "stray")
		if mode == "" {
			mode = "cl"
		}
	case "slow":
		time.Sleep(agreeSlow)
		mode = "cl"
	}

	var b strings.Builder
	if mode == "hints" {
		b.WriteString("HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n")
	}
	status := "200 OK"
	if mode == "nobody" {
		status = "204 No Content"
	}
	fmt.Fprintf(&b, "HTTP/1.1 %s\r\nX-Up-First: 1\r\nSet-Cookie: a=1; Path=/\r\nContent-Type: text/plain\r\nServer: agree-up\r\nX-Up-Key: %08x\r\n", status, sum)
	closeAfter := false
	switch mode {
	case "cl", "hints", "big":
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
	case "clclose":
		fmt.Fprintf(&b, "Content-Length: %d\r\nConnection: close\r\n", len(body))
		closeAfter = true
	case "chunked":
		b.WriteString("Transfer-Encoding: chunked\r\n")
	case "close":
		b.WriteString("Connection: close\r\n")
		closeAfter = true
	case "nobody":
		body = ""
	}
	b.WriteString("Set-Cookie: b=2; Path=/\r\nCache-Control: no-store\r\n\r\n")
	if method == "HEAD" {
		if stray != "" {
			// A body after the answer to HEAD.
			b.WriteString(body)
		}
		b.WriteString(stray)
		return []byte(b.String()), closeAfter
	}
	if mode == "chunked" {
		half := len(body) / 2
		fmt.Fprintf(&b, "%x;ext=1\r\n%s\r\n%x\r\n%s\r\n0\r\nX-Trailer: t\r\n\r\n", half, body[:half], len(body)-half, body[half:])
	} else {
		b.WriteString(body)
	}
	b.WriteString(stray)
	return []byte(b.String()), closeAfter
}
