//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// The rcmix case: traffic shaped like a Rocket.Chat server's, all at once
// against one target — DDP WebSockets with heartbeats, SockJS xhr-polling
// sessions held by the server, xhr-streaming sessions, and a REST mix at a
// fixed rate — while the target's CPU time and memory are read from /proc.
// The load generator is this process: goroutines, one connection each.

// rcmixPeriods are Rocket.Chat's timings; runs shorter than a minute scale
// them down by duration/60 s so every poll still completes a few times.
type rcmixPeriods struct {
	wsEvery     time.Duration // each client's DDP frame (10 s)
	ping        time.Duration // the server's WebSocket ping (30 s)
	hold        time.Duration // the server's hold of an xhr poll (25 s)
	streamEvery time.Duration // the server's xhr-stream message (5 s)
}

func rcmixTimings(d time.Duration) rcmixPeriods {
	scale := min(1, float64(d)/float64(time.Minute))
	s := func(x time.Duration) time.Duration {
		return max(50*time.Millisecond, time.Duration(float64(x)*scale).Round(time.Millisecond))
	}
	return rcmixPeriods{wsEvery: s(10 * time.Second), ping: s(30 * time.Second), hold: s(25 * time.Second), streamEvery: s(5 * time.Second)}
}

// What the stand-in upstream answers (bench/cmd/upstream), written out here
// so the harness checks the proxies against its own copy.
const (
	rcPollAnswer  = `a["{\"msg\":\"changed\",\"collection\":\"stream-notify-user\",\"id\":\"id\",\"fields\":{\"eventName\":\"bench/notification\",\"args\":[]}}"]` + "\n"
	rcStreamFrame = `a["{\"msg\":\"ping\"}"]` + "\n"
	rcPreludeLen  = 2049 // 2048 'h' and a newline
)

// rcmixResult is one run of the mix against one target.
type rcmixResult struct {
	Target      string
	Round       int
	Seconds     float64 // the measured window
	CPU         float64 // the target's user+system CPU seconds in the window (nginx: master and workers)
	HarnessCPU  float64 // the load generator's (this process's) in the same window
	PeakRSS     int64   // sampled every 20 ms over the window (nginx: summed)
	EndRSS      int64   // at the window's end, everything still open
	RESTSent    int64
	RESTOK      int64
	RESTRate    float64 // answered requests per second
	P50, P99    float64 // ms, from each request's scheduled time
	WSWanted    int
	WSOpen      int
	WSSent      int64
	WSEchoed    int64
	Pings       int64
	Polls       int64 // answered correctly
	StreamMsgs  int64
	Errors      map[string]int64
	FirstErrors map[string]string
	Err         string     // the run itself failed
	Sys         *sysCounts // nil: perf(1) could not count
}

func (r rcmixResult) errorCount() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// errTally counts errors by kind and keeps the first message of each.
type errTally struct {
	mu    sync.Mutex
	count map[string]int64
	first map[string]string
}

func (e *errTally) add(kind string, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.count == nil {
		e.count, e.first = map[string]int64{}, map[string]string{}
	}
	if e.count[kind] == 0 && err != nil {
		e.first[kind] = clip([]byte(err.Error()), 200)
	}
	e.count[kind]++
}

func (e *errTally) addN(kind string, n int64, msg string) {
	if n <= 0 {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.count == nil {
		e.count, e.first = map[string]int64{}, map[string]string{}
	}
	if e.count[kind] == 0 {
		e.first[kind] = msg
	}
	e.count[kind] += n
}

// rcmixTarget is where the mix goes and how to observe the target.
type rcmixTarget struct {
	name string
	addr string
	pids func() []int
	// route says the target answers sessions/info itself (sessiongate): its
	// answers are checked exactly; a peer forwards them to the upstream.
	route bool
	// admin is sessiongate's admin listener, for -profile ("" for a peer).
	admin string
}

// cpuSeconds sums the CPU time of pids; rssOf their RSS. The caller lists
// the processes once: finding nginx's workers scans all of /proc, too much
// to do every 20 ms beside the target.
func cpuSeconds(pids []int) float64 {
	var total float64
	for _, pid := range pids {
		if s, err := proc.CPUSeconds(pid); err == nil {
			total += s
		}
	}
	return total
}

func rssOf(pids []int) int64 {
	var total int64
	for _, pid := range pids {
		if m, err := proc.ReadMem(pid); err == nil {
			total += m.RSS
		}
	}
	return total
}

// rcmixClients is how many connections the mix holds open at once.
func (h *harness) rcmixClients() int {
	return h.o.rcmixWS + h.o.rcmixPolls + h.o.rcmixStreams + h.o.rcmixConns
}

// runRCMix runs the mix against a fresh sessiongate and against nginx, in
// -rounds interleaved rounds, the order rotated each round.
func (h *harness) runRCMix(ctx context.Context) error {
	targets := []string{tGate, tNginx}
	for r := 0; r < h.o.rounds; r++ {
		for _, name := range rotate(targets, r) {
			if ctx.Err() != nil {
				return fmt.Errorf("rcmix round %d: %w", r+1, ctx.Err())
			}
			progress("round %d/%d: rcmix → %s (%d WebSockets, %d polls, %d streams, %d REST req/s over %d conns, %v)",
				r+1, h.o.rounds, name, h.o.rcmixWS, h.o.rcmixPolls, h.o.rcmixStreams, h.o.rcmixRate, h.o.rcmixConns, h.o.rcmixDuration)
			var res rcmixResult
			switch name {
			case tGate:
				g, err := h.startGate(ctx)
				if err != nil {
					return err
				}
				t := rcmixTarget{name: tGate, addr: g.addr, pids: func() []int { return []int{g.p.PID()} }, route: true}
				if h.o.profile && r == h.o.rounds-1 {
					t.admin = g.admin
				}
				res = h.rcmixRun(ctx, t)
				h.stopGate(g)
			default:
				res = h.rcmixRun(ctx, rcmixTarget{name: tNginx, addr: h.nginxAddr, pids: func() []int {
					return append([]int{h.nginxProc.PID()}, proc.Children(h.nginxProc.PID())...)
				}})
			}
			if ctx.Err() != nil {
				return fmt.Errorf("rcmix round %d: %w", r+1, ctx.Err()) // a killed run is no sample
			}
			res.Round = r + 1
			if res.Err != "" {
				progress("rcmix → %s: %s", name, res.Err)
			} else if n := res.errorCount(); n > 0 {
				progress("rcmix → %s: %d errors %v", name, n, res.Errors)
			}
			h.res.RCMix = append(h.res.RCMix, res)
		}
	}
	return nil
}

// rcmixRun opens the WebSockets (not measured: a ramp), starts the polls
// and streams, then measures one window of -rcmix-duration with the REST
// mix running, and closes everything.
func (h *harness) rcmixRun(ctx context.Context, t rcmixTarget) (res rcmixResult) {
	o := h.o
	per := rcmixTimings(o.rcmixDuration)
	res = rcmixResult{Target: t.name, WSWanted: o.rcmixWS}
	var errs errTally
	// Last of the deferred calls: after every client has stopped, so the
	// tally is final (res is the named result: the copy the caller gets).
	defer func() {
		errs.mu.Lock()
		res.Errors, res.FirstErrors = maps.Clone(errs.count), maps.Clone(errs.first)
		errs.mu.Unlock()
	}()

	// stop ends every client; stopping is set first so that the errors
	// that closing causes are not counted.
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	var stopping atomic.Bool
	var wg sync.WaitGroup
	defer func() {
		stopping.Store(true)
		stop()
		waitTimeout(&wg, 15*time.Second)
	}()

	// WebSockets, 64 dialers at a time.
	progress("rcmix → %s: opening %d WebSockets", t.name, o.rcmixWS)
	ws := make([]*websocket.Conn, o.rcmixWS)
	dialer := &websocket.Dialer{HandshakeTimeout: 10 * time.Second, ReadBufferSize: 512, WriteBufferSize: 512}
	var next, failed atomic.Int64
	var dialWG sync.WaitGroup
	for w := 0; w < min(64, o.rcmixWS); w++ {
		dialWG.Add(1)
		go func() {
			defer dialWG.Done()
			for runCtx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= len(ws) {
					return
				}
				url := fmt.Sprintf("ws://%s/sockjs/%03d/%s/websocket?ping_ms=%d", t.addr, i%1000, sockID(i), per.ping.Milliseconds())
				c, resp, err := dialer.DialContext(runCtx, url, nil)
				if err != nil {
					if resp != nil {
						err = fmt.Errorf("%w (status %d)", err, resp.StatusCode)
					}
					errs.add("ws connect", err)
					// Give up once failures pass 1 %: a target that cannot
					// tunnel fails fast instead of timing out thousands of
					// times.
					if failed.Add(1) > int64(len(ws)/100+1) {
						next.Store(int64(len(ws)))
					}
					continue
				}
				ws[i] = c
			}
		}()
	}
	dialWG.Wait()
	if ctx.Err() != nil {
		res.Err = ctx.Err().Error()
		return res
	}
	if n := failed.Load(); n > int64(len(ws)/100+1) {
		res.Err = fmt.Sprintf("gave up opening WebSockets after %d failures", n)
		return res
	}

	var wsSent, wsEchoed, pings, polls, streamMsgs atomic.Int64
	stopWrites := make(chan struct{})
	var writers sync.WaitGroup
	for i, c := range ws {
		if c == nil {
			continue
		}
		res.WSOpen++
		msg := ddpFrame(i)
		c.SetPingHandler(func(data string) error {
			pings.Add(1)
			err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(5*time.Second))
			if err != nil && !stopping.Load() {
				errs.add("ws pong", err)
			}
			return nil
		})
		wg.Add(1)
		go func() { // reader: the echoes and the pings
			defer wg.Done()
			for {
				_, b, err := c.ReadMessage()
				if err != nil {
					if !stopping.Load() {
						errs.add("ws closed early", err)
					}
					return
				}
				if !bytes.Equal(b, msg) {
					errs.add("ws wrong echo", fmt.Errorf("got %q", clip(b, 60)))
					continue
				}
				wsEchoed.Add(1)
			}
		}()
		writers.Add(1)
		go func() { // writer: one DDP frame every wsEvery, staggered
			defer writers.Done()
			first := time.Duration(int64(per.wsEvery) * int64(i) / int64(len(ws)))
			timer := time.NewTimer(first)
			defer timer.Stop()
			for {
				select {
				case <-stopWrites:
					return
				case <-timer.C:
				}
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if err := c.WriteMessage(websocket.TextMessage, msg); err != nil {
					if !stopping.Load() {
						errs.add("ws write", err)
					}
					return
				}
				wsSent.Add(1)
				timer.Reset(per.wsEvery)
			}
		}()
	}

	// xhr polls and streams: their own pool, a connection per client.
	client := &http.Client{Transport: &http.Transport{
		DisableCompression:  true,
		MaxIdleConnsPerHost: o.rcmixPolls + o.rcmixStreams + 16,
		IdleConnTimeout:     2 * time.Minute,
	}}
	defer client.CloseIdleConnections()
	base := "http://" + t.addr
	for i := 0; i < o.rcmixPolls; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// The first hold is shorter, spread over one period, so the polls
			// do not all come back at once.
			hold := per.hold * time.Duration(i+1) / time.Duration(o.rcmixPolls)
			for n := 0; runCtx.Err() == nil; n++ {
				if n > 0 {
					hold = per.hold
				}
				url := fmt.Sprintf("%s/sockjs/%03d/%s/xhr?hold_ms=%d", base, i%1000, sockID(i), hold.Milliseconds())
				err := rcPoll(runCtx, client, url, hold+15*time.Second)
				if stopping.Load() || runCtx.Err() != nil {
					return
				}
				if err != nil {
					errs.add("poll", err)
					proc.Sleep(runCtx, 100*time.Millisecond) // no tight loop on a dead target
					continue
				}
				polls.Add(1)
			}
		}()
	}
	for i := 0; i < o.rcmixStreams; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			url := fmt.Sprintf("%s/sockjs/%03d/%s/xhr_streaming?interval_ms=%d", base, i%1000, sockID(o.rcmixPolls+i), per.streamEvery.Milliseconds())
			for runCtx.Err() == nil {
				err := rcStream(runCtx, client, url, per.streamEvery, &streamMsgs)
				if stopping.Load() || runCtx.Err() != nil {
					return
				}
				errs.add("stream", err)
				proc.Sleep(runCtx, 100*time.Millisecond)
			}
		}()
	}

	// Settle, then the window: CPU and memory around the REST mix.
	if proc.Sleep(ctx, time.Second) != nil {
		res.Err = ctx.Err().Error()
		return res
	}
	progress("rcmix → %s: %d WebSockets open; measuring %v", t.name, res.WSOpen, o.rcmixDuration)
	pids := t.pids()
	cpu0, self0 := cpuSeconds(pids), selfCPU()
	peak := proc.SamplePeak(func() int64 { return rssOf(pids) })
	start := time.Now()
	var prof <-chan string
	if t.admin != "" {
		prof = h.profileGate(ctx, t.admin, "rcmix", max(1, int(o.rcmixDuration/time.Second)-1))
	}
	sys := countSyscalls(ctx, pids, o.rcmixDuration-time.Second)
	rest := h.rcmixREST(runCtx, t, start, o.rcmixDuration, &errs, &stopping)
	res.Sys = <-sys
	if prof != nil {
		if note := <-prof; note != "" {
			h.res.Notes = append(h.res.Notes, note)
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.CPU, res.HarnessCPU = cpuSeconds(pids)-cpu0, selfCPU()-self0
	res.EndRSS = rssOf(pids)
	res.PeakRSS = max(peak.Stop(), res.EndRSS)
	res.RESTSent, res.RESTOK = rest.sent, rest.ok
	res.RESTRate = float64(rest.ok) / res.Seconds
	res.P50, res.P99 = percentile(rest.lat, 0.50), percentile(rest.lat, 0.99)

	// Let the last echoes arrive, then count what never came back.
	close(stopWrites)
	writers.Wait()
	deadline := time.Now().Add(3 * time.Second)
	for wsEchoed.Load()+errs.get("ws wrong echo") < wsSent.Load() && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	res.WSSent, res.WSEchoed, res.Pings = wsSent.Load(), wsEchoed.Load(), pings.Load()
	res.Polls, res.StreamMsgs = polls.Load(), streamMsgs.Load()
	errs.addN("ws echo missing", res.WSSent-res.WSEchoed-errs.get("ws wrong echo"), "a frame sent was not echoed within 3 s of the window's end")
	if res.WSOpen > 0 && res.Pings == 0 && res.Seconds > per.ping.Seconds()+1 {
		errs.addN("ws no ping", 1, "no server ping reached any client")
	}
	stopping.Store(true)
	for _, c := range ws {
		if c != nil {
			c.Close()
		}
	}
	return res
}

func (e *errTally) get(kind string) int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.count[kind]
}

// sockID is a SockJS session id (8 characters) for client i.
func sockID(i int) string { return fmt.Sprintf("b%07d", i) }

// ddpFrame is client i's 200-byte DDP method call (a SockJS array frame
// carrying a JSON string, as Rocket.Chat's client sends on /websocket).
func ddpFrame(i int) []byte {
	b := []byte(fmt.Sprintf(`["{\"msg\":\"method\",\"method\":\"UserPresence:setDefaultStatus\",\"id\":\"%d\",\"params\":[\"online\",\"`, i))
	tail := []byte(`\"]}"]`)
	for len(b)+len(tail) < 200 {
		b = append(b, 'p')
	}
	return append(b, tail...)
}

// rcPoll is one xhr poll: it must answer 200 with the upstream's message
// frame.
func rcPoll(ctx context.Context, c *http.Client, url string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", url, nil)
	req.Header.Set("Content-Type", "text/plain;charset=UTF-8")
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return fmt.Errorf("cut early: %w", err)
	}
	if resp.StatusCode != 200 || string(b) != rcPollAnswer {
		return fmt.Errorf("got %d %q", resp.StatusCode, clip(b, 80))
	}
	return nil
}

// rcStream opens one xhr stream and reads it until ctx ends (nil error is
// never returned before that): the prelude, then a message frame every
// period. A message later than two periods plus 2 s is a stall.
func rcStream(ctx context.Context, c *http.Client, url string, period time.Duration, msgs *atomic.Int64) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	req, _ := http.NewRequestWithContext(ctx, "POST", url, nil)
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		return fmt.Errorf("got %d %q", resp.StatusCode, b)
	}
	errStalled := fmt.Errorf("stalled: no message within %v", 2*period+2*time.Second)
	watchdog := time.AfterFunc(2*period+2*time.Second, func() { cancel(errStalled) })
	defer watchdog.Stop()
	br := bufio.NewReaderSize(resp.Body, 4096)
	for n := 0; ; n++ {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if cause := context.Cause(ctx); cause != nil && errors.Is(cause, errStalled) {
				return errStalled
			}
			if err == io.EOF {
				return errors.New("cut early: the stream ended")
			}
			return fmt.Errorf("cut early: %w", err)
		}
		watchdog.Reset(2*period + 2*time.Second)
		if n == 0 {
			if len(line) != rcPreludeLen {
				return fmt.Errorf("prelude of %d bytes, want %d", len(line), rcPreludeLen)
			}
			continue
		}
		if string(line) != rcStreamFrame {
			return fmt.Errorf("got %q want %q", clip(line, 60), rcStreamFrame)
		}
		msgs.Add(1)
	}
}

// restStats is what the REST mix measured.
type restStats struct {
	sent, ok int64
	lat      []float64 // ms, sorted
}

// rcmixREST sends the REST mix at o.rcmixRate requests per second over
// o.rcmixConns keep-alive connections for d. Request j is scheduled at
// start + j/rate, connection j mod conns sends it, and its latency is
// measured from that scheduled time: a slow answer delays the requests
// queued behind it on its connection and they count as late, instead of
// the load quietly dropping (coordinated omission). Of every ten requests,
// one is sessions/info (a hit), two are ~300-byte JSON POSTs (echoed) and
// seven are forwarded GETs of a 1 KB document.
func (h *harness) rcmixREST(ctx context.Context, t rcmixTarget, start time.Time, d time.Duration, errs *errTally, stopping *atomic.Bool) restStats {
	o := h.o
	if o.rcmixRate <= 0 {
		proc.Sleep(ctx, d) // no REST: the window still runs
		return restStats{}
	}
	conns := max(1, o.rcmixConns)
	rate := o.rcmixRate
	interval := float64(time.Second) / float64(rate)
	total := int64(d.Seconds() * float64(rate))
	var sent, ok atomic.Int64
	lats := make([][]float64, conns)
	var wg sync.WaitGroup
	for w := 0; w < conns; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c net.Conn
			var br *bufio.Reader
			var req []byte
			defer func() {
				if c != nil {
					c.Close()
				}
			}()
			lat := make([]float64, 0, total/int64(conns)+1)
			for j := int64(w); j < total; j += int64(conns) {
				at := start.Add(time.Duration(float64(j) * interval))
				if wait := time.Until(at); wait > 0 {
					if proc.Sleep(ctx, wait) != nil {
						break
					}
				}
				if ctx.Err() != nil {
					break
				}
				if c == nil {
					var err error
					if c, err = net.DialTimeout("tcp", t.addr, 5*time.Second); err != nil {
						c = nil
						errs.add("rest", err)
						sent.Add(1)
						continue
					}
					br = bufio.NewReaderSize(c, 4096)
				}
				var check func(status int, body []byte) error
				req, check = h.restRequest(req[:0], t, j)
				sent.Add(1)
				c.SetDeadline(time.Now().Add(10 * time.Second))
				err := rcDo(c, br, req, check)
				if err != nil {
					if !stopping.Load() {
						errs.add("rest", err)
					}
					c.Close()
					c = nil
					continue
				}
				ok.Add(1)
				lat = append(lat, float64(time.Since(at))/float64(time.Millisecond))
			}
			lats[w] = lat
		}()
	}
	wg.Wait()
	var all []float64
	for _, l := range lats {
		all = append(all, l...)
	}
	sort.Float64s(all)
	return restStats{sent: sent.Load(), ok: ok.Load(), lat: all}
}

// restPOSTBody is the mix's small POST: a DDP-over-REST method call.
var restPOSTBody = func() string {
	b := `{"message":"{\"msg\":\"method\",\"method\":\"sendMessage\",\"params\":[{\"rid\":\"GENERAL\",\"msg\":\"`
	tail := `\"}],\"id\":\"7\"}"}`
	return b + strings.Repeat("m", 300-len(b)-len(tail)) + tail
}()

// restRequest appends request j of the mix to b and returns a check of its
// answer.
func (h *harness) restRequest(b []byte, t rcmixTarget, j int64) ([]byte, func(int, []byte) error) {
	u := int(j % int64(h.o.users))
	s := int(j/int64(h.o.users)) % sessionsPerUser
	head := func(method, path string) {
		b = fmt.Appendf(b, "%s %s HTTP/1.1\r\nHost: %s\r\nX-User-Id: %s\r\nX-Auth-Token: %s\r\n", method, path, t.addr, userID(u), loginToken(u, 0))
	}
	switch j % 10 {
	case 0:
		head("GET", "/api/v1/sessions/info?sessionId="+sessionID(u, s))
		b = append(b, "\r\n"...)
		if t.route {
			want := successBody(u, s)
			return b, func(status int, body []byte) error {
				if status != 200 || string(body) != want {
					return fmt.Errorf("sessions/info: got %d %q", status, clip(body, 80))
				}
				return nil
			}
		}
		return b, wantLen("sessions/info (forwarded)", rcJSONLen)
	case 3, 7:
		head("POST", "/api/v1/method.call/sendMessage")
		b = fmt.Appendf(b, "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(restPOSTBody), restPOSTBody)
		return b, func(status int, body []byte) error {
			if status != 200 || string(body) != restPOSTBody {
				return fmt.Errorf("POST: got %d %q", status, clip(body, 80))
			}
			return nil
		}
	default:
		paths := [...]string{"/api/v1/me", "/api/v1/subscriptions.get", "/api/v1/rooms.get", "/api/v1/permissions.listAll"}
		head("GET", paths[j%int64(len(paths))])
		b = append(b, "\r\n"...)
		return b, wantLen("GET", rcJSONLen)
	}
}

// rcJSONLen is the length of the upstream's fixed GET answer.
const rcJSONLen = 1024

func wantLen(what string, n int) func(int, []byte) error {
	return func(status int, body []byte) error {
		if status != 200 || len(body) != n {
			return fmt.Errorf("%s: got %d with %d bytes, want 200 with %d", what, status, len(body), n)
		}
		return nil
	}
}

// rcDo writes one request and reads its answer on a kept-alive connection.
func rcDo(c net.Conn, br *bufio.Reader, req []byte, check func(int, []byte) error) error {
	if _, err := c.Write(req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.Close {
		return fmt.Errorf("the target closed the keep-alive connection (status %d)", resp.StatusCode)
	}
	return check(resp.StatusCode, body)
}

// percentile of sorted xs (nearest rank); 0 for none.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func selfCPU() float64 {
	s, _ := proc.CPUSeconds(os.Getpid())
	return s
}

// waitTimeout waits for wg at most d.
func waitTimeout(wg *sync.WaitGroup, d time.Duration) {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
	}
}

// rcmixTable renders the rcmix runs: medians over rounds per target, and
// sessiongate ÷ nginx.
func (h *harness) rcmixTable() table {
	o := h.o
	per := rcmixTimings(o.rcmixDuration)
	t := table{
		title: fmt.Sprintf("Rocket.Chat-shaped mix, all at once (medians over rounds): %d DDP WebSockets (200 B every %v, server ping every %v), %d xhr polls held %v, %d xhr streams (a message every %v), REST %d req/s over %d conns (10%% sessions/info, 20%% small POST, 70%% GET), %v per run",
			o.rcmixWS, per.wsEvery, per.ping, o.rcmixPolls, per.hold, o.rcmixStreams, per.streamEvery, o.rcmixRate, o.rcmixConns, o.rcmixDuration),
		header: []string{"target", "runs", "CPU s", "CPU % of a core", "peak RSS", "end RSS", "REST req/s", "REST p50 ms", "REST p99 ms",
			"WS open", "WS echoed/sent", "pings", "polls", "stream msgs", "errors"},
	}
	type agg struct {
		cpu, core, peak, end, rate, p50, p99, gen []float64
		sys, epoll, cs                            []float64 // per second
		runs                                      int
		open, wanted                              int
		sent, echoed, pings, polls, msgs, errors  int64
		kinds                                     map[string]int64
		first                                     map[string]string
		failed                                    []string
	}
	by := map[string]*agg{}
	for _, name := range []string{tGate, tNginx} {
		by[name] = &agg{kinds: map[string]int64{}, first: map[string]string{}}
	}
	for _, r := range h.res.RCMix {
		a := by[r.Target]
		if a == nil {
			continue
		}
		if r.Err != "" {
			a.failed = append(a.failed, r.Err)
			continue
		}
		a.runs++
		a.cpu = append(a.cpu, r.CPU)
		a.core = append(a.core, 100*r.CPU/r.Seconds)
		a.peak = append(a.peak, float64(r.PeakRSS))
		a.end = append(a.end, float64(r.EndRSS))
		a.rate = append(a.rate, r.RESTRate)
		a.p50 = append(a.p50, r.P50)
		a.p99 = append(a.p99, r.P99)
		a.gen = append(a.gen, 100*r.HarnessCPU/r.Seconds)
		if c := r.Sys; c != nil {
			a.sys = append(a.sys, float64(c.Syscalls)/c.Seconds)
			a.epoll = append(a.epoll, float64(c.EpollWaits)/c.Seconds)
			a.cs = append(a.cs, float64(c.CtxSwitches)/c.Seconds)
		}
		a.open, a.wanted = a.open+r.WSOpen, a.wanted+r.WSWanted
		a.sent += r.WSSent
		a.echoed += r.WSEchoed
		a.pings += r.Pings
		a.polls += r.Polls
		a.msgs += r.StreamMsgs
		for k, v := range r.Errors {
			a.kinds[k] += v
			a.errors += v
			if _, ok := a.first[k]; !ok {
				a.first[k] = r.FirstErrors[k]
			}
		}
	}
	for _, name := range []string{tGate, tNginx} {
		a := by[name]
		row := []string{name, strconv.Itoa(a.runs), "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", "—", "—"}
		if a.runs > 0 {
			row[2] = fmt.Sprintf("%.2f", median(a.cpu))
			row[3] = fmt.Sprintf("%.0f%%", median(a.core))
			row[4], row[5] = fmtMiB(int64(median(a.peak))), fmtMiB(int64(median(a.end)))
			row[6], row[7], row[8] = fmtRPS(median(a.rate)), fmtMS(median(a.p50)), fmtMS(median(a.p99))
			row[9] = fmt.Sprintf("%d/%d", a.open, a.wanted)
			row[10] = fmt.Sprintf("%d/%d", a.echoed, a.sent)
			row[11], row[12], row[13] = strconv.FormatInt(a.pings, 10), strconv.FormatInt(a.polls, 10), strconv.FormatInt(a.msgs, 10)
			row[14] = strconv.FormatInt(a.errors, 10)
		}
		if len(a.failed) > 0 {
			row[14] = fmt.Sprintf("%d RUN(S) FAILED: %s", len(a.failed), a.failed[len(a.failed)-1])
		}
		t.rows = append(t.rows, row)
		kinds := make([]string, 0, len(a.kinds))
		for k := range a.kinds {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, k := range kinds {
			t.notes = append(t.notes, fmt.Sprintf("%s errors, %s: %d (first: %s)", name, k, a.kinds[k], a.first[k]))
		}
		if a.runs > 0 {
			t.notes = append(t.notes, fmt.Sprintf("load generator (this process) while driving %s: %.0f%% of a core (median)", name, median(a.gen)))
		}
	}
	g, n := by[tGate], by[tNginx]
	if g.runs > 0 && n.runs > 0 {
		cpu := median(g.cpu) / median(n.cpu)
		peak := median(g.peak) / median(n.peak)
		end := median(g.end) / median(n.end)
		p99 := median(g.p99) / median(n.p99)
		t.rows = append(t.rows, []string{"sessiongate ÷ nginx", "", ratio(median(g.cpu), median(n.cpu)), "",
			ratio(median(g.peak), median(n.peak)), ratio(median(g.end), median(n.end)),
			ratio(median(g.rate), median(n.rate)), ratio(median(g.p50), median(n.p50)), ratio(median(g.p99), median(n.p99)), "", "", "", "", "", ""})
		verdict := "—"
		if median(n.cpu) > 0 && median(n.p99) > 0 && median(n.peak) > 0 && median(n.end) > 0 {
			verdict = metOrMissed(cpu <= 1 && p99 <= 1 && peak < 1 && end < 1)
		}
		t.notes = append(t.notes, fmt.Sprintf("goal on the mix: CPU ≤ 1.00× (%s), p99 ≤ 1.00× (%s), RSS < 1.00× (peak %s, end %s): %s",
			ratio(median(g.cpu), median(n.cpu)), ratio(median(g.p99), median(n.p99)), ratio(median(g.peak), median(n.peak)), ratio(median(g.end), median(n.end)), verdict))
		if len(g.sys) > 0 && len(n.sys) > 0 {
			t.notes = append(t.notes, fmt.Sprintf("counted by perf stat (medians per second): system calls %.0f against %.0f (%s), epoll_wait %.0f against %.0f (%s), context switches %.0f against %.0f (%s)",
				median(g.sys), median(n.sys), ratio(median(g.sys), median(n.sys)),
				median(g.epoll), median(n.epoll), ratio(median(g.epoll), median(n.epoll)),
				median(g.cs), median(n.cs), ratio(median(g.cs), median(n.cs))))
		}
	}
	t.notes = append(t.notes,
		"CPU: user+system time from /proc/<pid>/stat over the measured window (nginx: master and workers summed); RSS: sampled every 20 ms (nginx: summed), end = at the window's end with everything open.",
		"The WebSockets are opened, and the polls and streams started, before the window (not measured); sessiongate is started fresh for each run, nginx runs throughout.",
		"REST latency is from each request's scheduled time (fixed rate, coordinated omission corrected); errors count every failed or wrong answer, WebSocket closed early or echo missing, poll or stream cut early or stalled.")
	if o.rcmixDuration < time.Minute {
		t.notes = append(t.notes, "Runs shorter than 60 s scale Rocket.Chat's periods (10 s frames, 30 s pings, 25 s holds, 5 s stream messages) by duration/60 s.")
	}
	return t
}
