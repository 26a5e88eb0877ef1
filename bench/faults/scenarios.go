//go:build linux

package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"syscall"
	"time"

	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// timing is the shape of a fault scenario: steady load for warm, the fault
// for fault, then load for after while the system recovers.
type timing struct {
	warm, fault, pause, after time.Duration
}

// runEnv is what every scenario shares.
type runEnv struct {
	bin   string
	dir   string
	data  *dataset
	load  loadConfig
	soakL loadConfig
	tm    timing
	soak  time.Duration
	logf  func(format string, args ...any)
}

// check is one thing that must hold.
type check struct {
	what   string
	ok     bool
	detail string
}

// scenarioReport is everything measured in one scenario.
type scenarioReport struct {
	name, fault string
	settings    string
	elapsed     time.Duration
	faultStart  time.Duration
	faultEnd    time.Duration
	results     []result
	wrong       []string
	before      usage // under load, just before the fault
	after       usage // under load, at the end
	metricsDiff map[string]map[string]float64
	notes       []string
	checks      []check
	affected    []class // the classes the fault is aimed at, for the recovery figure
	soak        []soakSample
	err         error
}

func (r *scenarioReport) check(what string, ok bool, format string, args ...any) {
	r.checks = append(r.checks, check{what, ok, fmt.Sprintf(format, args...)})
}

func (r *scenarioReport) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// held reports whether every check passed.
func (r *scenarioReport) held() bool {
	if r.err != nil {
		return false
	}
	for _, c := range r.checks {
		if !c.ok {
			return false
		}
	}
	return true
}

// fixture is the processes of one scenario.
type fixture struct {
	ps       *proc.Set
	redis    *redisServer // standalone; nil with Sentinel
	sentinel *sentinelSet
	up       *standIn
	gate     *gate
	env      map[string]string
}

func (f *fixture) close() {
	f.ps.StopAll()
	if f.up != nil {
		f.up.stop()
	}
	if f.sentinel != nil {
		f.sentinel.client.Close()
	}
}

// newFixture starts Redis (standalone, or a Sentinel set), seeds it, starts
// the stand-in upstream and the gate with the base settings plus extra.
func (e *runEnv) newFixture(ctx context.Context, name string, withSentinel bool, extra map[string]string) (*fixture, error) {
	f := &fixture{ps: &proc.Set{Dir: e.dir}}
	var redisURL string
	if withSentinel {
		s, err := newSentinelSet(ctx, f.ps)
		if err != nil {
			f.close()
			return nil, err
		}
		f.sentinel = s
		mc := s.master.client()
		defer mc.Close()
		if err := e.data.seed(ctx, mc); err != nil {
			f.close()
			return nil, fmt.Errorf("seeding: %w", err)
		}
		if err := mc.Wait(ctx, 1, 5*time.Second).Err(); err != nil {
			f.close()
			return nil, fmt.Errorf("waiting for the replica: %w", err)
		}
		redisURL = "redis://127.0.0.1:1/0" // unused: Sentinel decides
	} else {
		r, err := newRedis(f.ps, "redis-"+name)
		if err != nil {
			f.close()
			return nil, err
		}
		f.redis = r
		c := r.client()
		defer c.Close()
		if err := e.data.seed(ctx, c); err != nil {
			f.close()
			return nil, fmt.Errorf("seeding: %w", err)
		}
		if err := r.save(ctx); err != nil {
			f.close()
			return nil, fmt.Errorf("saving: %w", err)
		}
		redisURL = r.url()
	}
	up, err := newStandIn(e.data)
	if err != nil {
		f.close()
		return nil, err
	}
	f.up = up
	f.env = gateEnv(up.url(), redisURL)
	if withSentinel {
		f.env["SESSIONGATE_REDIS_SENTINEL_ADDRS"] = f.sentinel.addr
		f.env["SESSIONGATE_REDIS_SENTINEL_MASTER"] = "mymaster"
	}
	for k, v := range extra {
		f.env[k] = v
	}
	g, err := startGate(f.ps, e.bin, "sessiongate-"+name, f.env)
	if err != nil {
		f.close()
		return nil, err
	}
	f.gate = g
	return f, nil
}

// faultSpec describes one fault scenario.
type faultSpec struct {
	name, fault string
	sentinel    bool
	env         map[string]string
	affected    []class
	// inject breaks something and returns when the fault is over. It may
	// add notes to the report.
	inject func(ctx context.Context, f *fixture, r *scenarioReport, since func() time.Duration) error
	// judge adds the scenario's own checks.
	judge func(r *scenarioReport)
}

// runFault runs one fault scenario under steady load.
func (e *runEnv) runFault(ctx context.Context, s faultSpec) *scenarioReport {
	r := &scenarioReport{name: s.name, fault: s.fault, affected: s.affected}
	began := time.Now()
	defer func() { r.elapsed = time.Since(began) }()
	f, err := e.newFixture(ctx, s.name, s.sentinel, s.env)
	if err != nil {
		r.err = err
		return r
	}
	defer f.close()
	r.settings = envSummary(f.env)

	t0 := time.Now()
	since := func() time.Duration { return time.Since(t0) }
	m0 := f.gate.metrics()
	load := startLoad(f.gate.addr, e.data, e.load, t0)
	if err := proc.Sleep(ctx, e.tm.warm); err != nil {
		load.stop()
		r.err = err
		return r
	}
	r.before = f.gate.usage()
	r.faultStart = since()
	e.logf("  %s: fault at %v", s.name, r.faultStart.Round(time.Millisecond))
	if err := s.inject(ctx, f, r, since); err != nil {
		load.stop()
		r.err = fmt.Errorf("injecting the fault: %w", err)
		return r
	}
	r.faultEnd = since()
	e.logf("  %s: fault over at %v", s.name, r.faultEnd.Round(time.Millisecond))
	proc.Sleep(ctx, e.tm.after)
	r.after = f.gate.usage()
	r.results = load.stop()
	r.wrong = load.wrong
	m1 := f.gate.metrics()
	r.metricsDiff = map[string]map[string]float64{
		"sessiongate_sessions_info_total":   metricDelta(m0, m1, "sessiongate_sessions_info_total"),
		"sessiongate_upstream_errors_total": metricDelta(m0, m1, "sessiongate_upstream_errors_total"),
	}
	r.check("gate alive", !f.gate.p.Exited(), "%s", map[bool]string{true: "running", false: "exited"}[!f.gate.p.Exited()])
	e.commonChecks(r)
	if s.judge != nil {
		s.judge(r)
	}
	return r
}

// commonChecks are the checks of every fault scenario: no 500, no wrong
// answer, recovery within the after window, goroutines and fds flat.
func (e *runEnv) commonChecks(r *scenarioReport) {
	all := tally(r.results, -1, 0, 1<<62)
	r.check("no 500", all.out[out500] == 0, "%d", all.out[out500])
	r.check("no wrong answer", all.out[outWrong] == 0, "%d", all.out[outWrong])
	for _, c := range r.affected {
		rec, ok := recovery(r.results, c, r.faultEnd)
		r.check("recovered: "+classNames[c], ok, "%s", fmtRecovery(rec, ok))
	}
	r.check("goroutines flat", r.after.Goroutines <= r.before.Goroutines+10, "%d → %d", r.before.Goroutines, r.after.Goroutines)
	r.check("fds flat", r.after.FDs <= r.before.FDs+10, "%d → %d", r.before.FDs, r.after.FDs)
}

// counts is a tally of results.
type counts struct {
	n      int
	out    [numOutcomes]int
	status map[int]int
}

// tally counts results of class c (-1: all) that started in [from, to).
func tally(rs []result, c int, from, to time.Duration) counts {
	k := counts{status: map[int]int{}}
	for _, x := range rs {
		if (c >= 0 && int(x.class) != c) || x.start < from || x.start >= to {
			continue
		}
		k.n++
		k.out[x.out]++
		k.status[int(x.status)]++
	}
	return k
}

// recovery is how long after faultEnd class c kept getting answers other
// than the healthy one: the end of the last unhealthy result that started
// after faultEnd. ok is false when the last second still had one, or had no
// result at all.
func recovery(rs []result, c class, faultEnd time.Duration) (time.Duration, bool) {
	var last, latest time.Duration
	for _, x := range rs {
		if x.class != c {
			continue
		}
		latest = max(latest, x.start)
		if x.start >= faultEnd && x.out != outOK {
			last = max(last, x.end)
		}
	}
	if latest == 0 {
		return 0, false
	}
	if last == 0 {
		return 0, true
	}
	return last - faultEnd, last < latest-time.Second
}

func fmtRecovery(d time.Duration, ok bool) string {
	if !ok {
		return "not recovered"
	}
	if d == 0 {
		return "immediate"
	}
	return d.Round(10 * time.Millisecond).String()
}

// routeUnaffected checks sessions/info in a scenario that leaves Redis
// alone: every answer comes from Redis, except those the gate itself
// counted as Redis errors (a stall of the shared machine can push a lookup
// past redis.timeout), which the policy forwards — and which then meet the
// upstream's fault like any forwarded request.
func routeUnaffected(r *scenarioReport) {
	route := tally(r.results, int(classRoute), 0, 1<<62)
	redisErrors := int(r.metricsDiff["sessiongate_sessions_info_total"][`{outcome="redis_error_forwarded"}`])
	notFromRedis := route.n - route.out[outOK]
	bad := route.out[outWrong] + route.out[out500] + route.out[outNetErr] + route.out[outOther]
	r.check("sessions/info unaffected", bad == 0 && notFromRedis <= redisErrors,
		"%d of %d answered from Redis; the rest (%d) forwarded after a Redis error the gate counted (%d)", route.out[outOK], route.n, notFromRedis, redisErrors)
	if redisErrors > 0 {
		r.note("%d Redis lookups failed although this scenario leaves Redis alone (the gate's log says `i/o timeout`: the lookup overran redis.timeout, 250ms): the shared machine stalled. redis.on_error=forward sent them upstream.", redisErrors)
	}
}

// faultSpecs are the fault scenarios, in order.
func (e *runEnv) faultSpecs() []faultSpec {
	tm := e.tm
	redisStop := func(ctx context.Context, f *fixture, r *scenarioReport, since func() time.Duration) error {
		f.redis.kill()
		if err := proc.Sleep(ctx, tm.fault); err != nil {
			return err
		}
		return f.redis.start()
	}
	policyJudge := func(policy string) func(r *scenarioReport) {
		return func(r *scenarioReport) {
			during := tally(r.results, int(classRoute), r.faultStart, r.faultEnd)
			byPolicy := during.out[outForwarded]
			other := during.out[outPolicy503]
			if policy == "unavailable" {
				byPolicy, other = other, byPolicy
			}
			r.check("sessions/info answered by policy ("+policy+")", byPolicy > 0 && other == 0 && during.out[outNetErr] == 0 && during.out[outOther] == 0,
				"%d of %d during the outage; %d the other policy, %d no answer, %d other", byPolicy, during.n, other, during.out[outNetErr], during.out[outOther])
			// The gate's own count must agree with what clients saw.
			all := tally(r.results, int(classRoute), 0, 1<<62)
			seen, label := all.out[outForwarded], `{outcome="redis_error_forwarded"}`
			if policy == "unavailable" {
				seen, label = all.out[outPolicy503], `{outcome="redis_error_unavailable"}`
			}
			if m := r.metricsDiff["sessiongate_sessions_info_total"]; len(m) > 0 {
				r.check("metrics agree with clients", int(m[label]) == seen, "sessiongate_sessions_info_total%s +%.0f, clients saw %d", label, m[label], seen)
			}
			fwd := tally(r.results, int(classForward), 0, 1<<62)
			r.check("forwarding unaffected", fwd.out[outOK] == fwd.n, "%d of %d ok", fwd.out[outOK], fwd.n)
		}
	}
	upstreamJudge := func(want outcome, alsoOK ...outcome) func(r *scenarioReport) {
		return func(r *scenarioReport) {
			routeUnaffected(r)
			during := tally(r.results, int(classForward), r.faultStart, r.faultEnd)
			okish := during.out[want] + during.out[outOK]
			for _, o := range alsoOK {
				okish += during.out[o]
			}
			r.check("forwarded requests failed cleanly ("+outcomeNames[want]+")", during.out[want] > 0 && okish == during.n,
				"%d %s of %d during the fault; %d no answer, %d other", during.out[want], outcomeNames[want], during.n, during.out[outNetErr], during.out[outOther])
		}
	}
	return []faultSpec{
		{
			name: "redis-stop", fault: fmt.Sprintf("redis-server killed (SIGKILL), restarted %v later from its snapshot", tm.fault),
			affected: []class{classRoute}, inject: redisStop, judge: policyJudge("forward"),
		},
		{
			name: "redis-stop-503", fault: "as redis-stop, with `redis.on_error=unavailable`",
			env:      map[string]string{"SESSIONGATE_REDIS_ON_ERROR": "unavailable"},
			affected: []class{classRoute}, inject: redisStop, judge: policyJudge("unavailable"),
		},
		{
			name: "redis-pause", fault: fmt.Sprintf("redis-server frozen (SIGSTOP) for %v, then SIGCONT", tm.pause),
			affected: []class{classRoute},
			inject: func(ctx context.Context, f *fixture, r *scenarioReport, since func() time.Duration) error {
				f.redis.pause()
				err := proc.Sleep(ctx, tm.pause)
				f.redis.resume()
				return err
			},
			judge: policyJudge("forward"),
		},
		{
			name: "sentinel-failover", fault: "SENTINEL FAILOVER to the replica; the old master killed 1 s after the switch",
			sentinel: true, affected: []class{classRoute},
			inject: func(ctx context.Context, f *fixture, r *scenarioReport, since func() time.Duration) error {
				s := f.sentinel
				start := since()
				if err := s.client.Failover(ctx, "mymaster").Err(); err != nil {
					return err
				}
				if err := until(ctx, 20*time.Second, func() bool { return s.masterPort(ctx) == s.replica.port() }); err != nil {
					return fmt.Errorf("sentinel did not switch: %w", err)
				}
				r.note("Sentinel switched the master %v after SENTINEL FAILOVER.", (since() - start).Round(time.Millisecond))
				if err := proc.Sleep(ctx, time.Second); err != nil {
					return err
				}
				s.master.kill()
				return nil
			},
			judge: func(r *scenarioReport) {
				route := tally(r.results, int(classRoute), 0, 1<<62)
				r.check("sessions/info never failed", route.out[outNetErr] == 0 && route.out[outOther] == 0 && route.out[outPolicy503] == 0,
					"%d forwarded by policy, %d no answer, %d other", route.out[outForwarded], route.out[outNetErr], route.out[outOther])
			},
		},
		{
			name: "upstream-stop", fault: fmt.Sprintf("stand-in Rocket.Chat stopped (listener and every connection closed), restarted %v later", tm.fault),
			affected: []class{classForward, classWS},
			inject: func(ctx context.Context, f *fixture, r *scenarioReport, since func() time.Duration) error {
				f.up.stop()
				if err := proc.Sleep(ctx, tm.fault); err != nil {
					return err
				}
				return f.up.start()
			},
			judge: upstreamJudge(out502),
		},
		{
			name: "upstream-hang", fault: fmt.Sprintf("stand-in accepts and reads but never answers, for %v", tm.fault),
			affected: []class{classForward, classWS},
			inject: func(ctx context.Context, f *fixture, r *scenarioReport, since func() time.Duration) error {
				f.up.setMode(modeHang)
				err := proc.Sleep(ctx, tm.fault)
				f.up.setMode(modeNormal)
				return err
			},
			judge: upstreamJudge(out504),
		},
		{
			name: "upstream-cut", fault: fmt.Sprintf("stand-in cuts every plain GET answer mid-body (half sent; chunked or Content-Length), for %v", tm.fault),
			affected: []class{classForward},
			inject: func(ctx context.Context, f *fixture, r *scenarioReport, since func() time.Duration) error {
				f.up.setMode(modeCut)
				err := proc.Sleep(ctx, tm.fault)
				f.up.setMode(modeNormal)
				return err
			},
			judge: upstreamJudge(outCut, out502),
		},
	}
}

// runSIGTERM sends SIGTERM to a gate under load, with long uploads, long
// polls and WebSockets in flight. docs/operations.md: /readyz 503 first, service
// continues for shutdown.delay, the listener closes, in-flight requests
// finish within shutdown.timeout, tunnels close, exit 0.
func (e *runEnv) runSIGTERM(ctx context.Context) *scenarioReport {
	delay, timeout := 2*time.Second, 15*time.Second
	if e.tm.warm < 5*time.Second { // quick
		delay, timeout = time.Second, 8*time.Second
	}
	r := &scenarioReport{name: "sigterm", fault: fmt.Sprintf("SIGTERM under load, with 4 uploads streaming at 1 MiB/s, 2 long-polls and %d WebSockets open", e.load.wsConns)}
	began := time.Now()
	defer func() { r.elapsed = time.Since(began) }()
	f, err := e.newFixture(ctx, "sigterm", false, map[string]string{
		"SESSIONGATE_SHUTDOWN_DELAY":   delay.String(),
		"SESSIONGATE_SHUTDOWN_TIMEOUT": timeout.String(),
		// Long-polls wait for their answer far longer than the fault
		// scenarios' 2s (SockJS: up to 25 s; the default is 90s).
		"SESSIONGATE_UPSTREAM_RESPONSE_HEADER_TIMEOUT": "60s",
	})
	if err != nil {
		r.err = err
		return r
	}
	defer f.close()
	r.settings = envSummary(f.env)
	g := f.gate

	t0 := time.Now()
	since := func() time.Duration { return time.Since(t0) }
	load := startLoad(g.addr, e.data, e.load, t0)
	proc.Sleep(ctx, e.tm.warm-time.Second)

	// Uploads that end well after the listener closes, long-polls likewise.
	uploadLen := int64(delay+3*time.Second) / int64(time.Second) << 20
	type inflight struct {
		what string
		err  error
	}
	var wg sync.WaitGroup
	inflightc := make(chan inflight, 8)
	client := newHTTPClient()
	client.Timeout = delay + timeout + 10*time.Second
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pr, pw := io.Pipe()
			go func() {
				chunk := pattern(64 << 10)
				tick := time.NewTicker(time.Second / 16) // 16 × 64 KiB = 1 MiB/s
				defer tick.Stop()
				for sent := int64(0); sent < uploadLen; sent += int64(len(chunk)) {
					<-tick.C
					if _, err := pw.Write(chunk); err != nil {
						return
					}
				}
				pw.Close()
			}()
			req, _ := http.NewRequest("POST", "http://"+g.addr+"/upload", pr)
			req.ContentLength = uploadLen
			want := fmt.Sprintf(`{"received":%d}`, uploadLen)
			resp, err := client.Do(req)
			if err == nil {
				var body []byte
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
				if err == nil && (resp.StatusCode != 200 || string(body) != want) {
					err = fmt.Errorf("got %d %q, want 200 %s", resp.StatusCode, body, want)
				}
			}
			inflightc <- inflight{fmt.Sprintf("upload %d (%d MiB)", i, uploadLen>>20), err}
		}()
	}
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := client.Get(fmt.Sprintf("http://%s/longpoll?ms=%d", g.addr, (delay + 2*time.Second).Milliseconds()))
			if err == nil {
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "{}" {
					err = fmt.Errorf("got %d %q", resp.StatusCode, body)
				}
			}
			inflightc <- inflight{fmt.Sprintf("long-poll %d", i), err}
		}()
	}
	proc.Sleep(ctx, time.Second)

	// SIGTERM; watch readiness and the listener until the process exits.
	before := g.usage()
	r.before = before
	tTerm := since()
	r.faultStart = tTerm
	g.p.Signal(syscall.SIGTERM)
	var tReady503, tRefused time.Duration
	var watch sync.WaitGroup
	watch.Add(2)
	go func() {
		defer watch.Done()
		for !g.p.Exited() {
			if st := g.ready(); st != 200 && tReady503 == 0 {
				tReady503 = since()
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}()
	go func() {
		defer watch.Done()
		for !g.p.Exited() {
			c, err := net.DialTimeout("tcp", g.addr, time.Second)
			if err != nil {
				tRefused = since()
				return
			}
			c.Close()
			time.Sleep(20 * time.Millisecond)
		}
	}()
	code, exited := g.p.Wait(delay + timeout + 5*time.Second)
	tExit := since()
	watch.Wait()
	r.faultEnd = tExit
	if !exited {
		g.p.Kill()
	}
	wg.Wait()
	close(inflightc)
	// WebSocket clients notice a closed tunnel at their next message.
	proc.Sleep(ctx, 500*time.Millisecond)
	r.results = load.stop()
	r.wrong = load.wrong
	if tRefused == 0 {
		tRefused = tExit
	}

	rel := func(t time.Duration) string { return "+" + (t - tTerm).Round(time.Millisecond).String() }
	r.note("SIGTERM at %v; /readyz 503 at %s; listener closed at %s; process exited at %s with code %d.",
		tTerm.Round(time.Millisecond), rel(tReady503), rel(tRefused), rel(tExit), code)
	r.check("/readyz 503 before the listener closed", tReady503 > 0 && tReady503 < tRefused, "503 at %s, closed at %s", rel(tReady503), rel(tRefused))
	served, cut, refused := 0, 0, 0
	for _, x := range r.results {
		if x.class == classWS {
			continue
		}
		if x.refused {
			refused++
		}
		if x.start >= tTerm && x.start < tRefused && x.out == outOK {
			served++
		}
		if x.start < tRefused && x.out != outOK && !x.refused {
			cut++
		}
	}
	r.note("%d requests were refused once the listener had closed (the load generator kept sending until the process exited).", refused)
	r.check("served during shutdown.delay", served > 0, "%d requests started after SIGTERM answered", served)
	r.check("no request cut before the listener closed", cut == 0, "%d", cut)
	bad := 0
	var lines []string
	n := 0
	for x := range inflightc {
		n++
		if x.err != nil {
			bad++
			lines = append(lines, x.what+": "+x.err.Error())
		}
	}
	r.check("uploads and long-polls in flight completed", bad == 0 && n == 6, "%d of %d %v", n-bad, 6, lines)
	// A client notices a closed tunnel at its next message (every 100 ms),
	// and cannot tell a close by the gate from one by the process exiting:
	// what it can tell is that no tunnel ended while the gate was still
	// accepting (the delay), and that every tunnel ended.
	var ended, early int
	var first, last time.Duration
	codes := map[int]int{}
	for _, w := range load.wsEnds {
		if w.at < tTerm {
			continue
		}
		ended++
		codes[w.code]++
		if w.at < tRefused {
			early++
		}
		if first == 0 {
			first = w.at
		}
		first, last = min(first, w.at), max(last, w.at)
	}
	if ended > 0 {
		r.note("WebSocket tunnels seen ending by their clients after SIGTERM: %d, from %s to %s (by close code, -1 = dropped without one: %v).", ended, rel(first), rel(last), codes)
	}
	r.check("tunnels open through shutdown.delay, then all closed", early == 0 && ended >= e.load.wsConns,
		"%d of %d ended, %d of them before the listener closed", ended, e.load.wsConns, early)
	bound := delay + timeout + time.Second
	r.check("exit 0 within shutdown.delay + shutdown.timeout", exited && code == 0 && tExit-tTerm <= bound, "code %d after %s (bound %v)", code, rel(tExit), bound)
	all := tally(r.results, -1, 0, 1<<62)
	r.check("no 500", all.out[out500] == 0, "%d", all.out[out500])
	r.check("no wrong answer", all.out[outWrong] == 0, "%d", all.out[outWrong])
	return r
}

// soakSample is the gate's usage at one moment of the soak.
type soakSample struct {
	at time.Duration
	usage
}

// runSoak runs moderate load for e.soak and samples RSS, goroutines and
// fds twenty times.
func (e *runEnv) runSoak(ctx context.Context) *scenarioReport {
	r := &scenarioReport{name: "soak", fault: fmt.Sprintf("none: %v of moderate load", e.soak)}
	began := time.Now()
	defer func() { r.elapsed = time.Since(began) }()
	f, err := e.newFixture(ctx, "soak", false, nil)
	if err != nil {
		r.err = err
		return r
	}
	defer f.close()
	r.settings = envSummary(f.env)
	t0 := time.Now()
	m0 := f.gate.metrics()
	load := startLoad(f.gate.addr, e.data, e.soakL, t0)
	step := max(e.soak/20, time.Second)
	for at := step; at <= e.soak; at += step {
		if err := proc.Sleep(ctx, time.Until(t0.Add(at))); err != nil {
			break
		}
		r.soak = append(r.soak, soakSample{time.Since(t0), f.gate.usage()})
	}
	r.results = load.stop()
	r.wrong = load.wrong
	r.metricsDiff = map[string]map[string]float64{
		"sessiongate_sessions_info_total": metricDelta(m0, f.gate.metrics(), "sessiongate_sessions_info_total"),
	}
	if len(r.soak) < 3 {
		r.err = fmt.Errorf("soak cut short")
		return r
	}
	// Start is the sample at a tenth of the run (pools and heap warm).
	start, mid, end := r.soak[len(r.soak)/10], r.soak[len(r.soak)/2], r.soak[len(r.soak)-1]
	r.before, r.after = start.usage, end.usage
	minRSS, maxRSS := start.RSS, start.RSS
	for _, s := range r.soak[len(r.soak)/10:] {
		minRSS, maxRSS = min(minRSS, s.RSS), max(maxRSS, s.RSS)
	}
	r.note("RSS %s / %s / %s (start / middle / end; min %s, max %s after warm-up); goroutines %d / %d / %d; fds %d / %d / %d.",
		mib(start.RSS), mib(mid.RSS), mib(end.RSS), mib(minRSS), mib(maxRSS),
		start.Goroutines, mid.Goroutines, end.Goroutines, start.FDs, mid.FDs, end.FDs)
	all := tally(r.results, -1, 0, 1<<62)
	r.check("gate alive", !f.gate.p.Exited(), "")
	r.check("no 500", all.out[out500] == 0, "%d", all.out[out500])
	r.check("no wrong answer", all.out[outWrong] == 0, "%d", all.out[outWrong])
	r.check("every request answered right", all.out[outOK]+all.out[outForwarded] == all.n, "%d of %d from where they should come, %d forwarded by policy", all.out[outOK], all.n, all.out[outForwarded])
	routeUnaffected(r)
	r.check("RSS flat", end.RSS <= start.RSS*3/2+8<<20, "%s → %s", mib(start.RSS), mib(end.RSS))
	r.check("goroutines flat", end.Goroutines <= start.Goroutines+10, "%d → %d", start.Goroutines, end.Goroutines)
	r.check("fds flat", end.FDs <= start.FDs+10, "%d → %d", start.FDs, end.FDs)
	return r
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
