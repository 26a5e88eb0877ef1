//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// class is a kind of traffic the load generator sends.
type class uint8

const (
	classRoute   class = iota // GET /api/v1/sessions/info, answered by the gate from Redis
	classForward              // REST GETs, 32 KiB uploads, 256 KiB downloads, forwarded
	classWS                   // WebSocket echo messages through a tunnel
	numClasses
)

var classNames = [numClasses]string{"sessions/info", "forwarded", "websocket"}

// outcome is how one request (or WebSocket message) ended.
type outcome uint8

const (
	outOK        outcome = iota // the right answer, from where it should come
	outForwarded                // sessions/info: the right answer, forwarded upstream (redis.on_error=forward)
	outPolicy503                // sessions/info: 503 Service unavailable (redis.on_error=unavailable)
	out502                      // 502 with the gate's Bad gateway body
	out504                      // 504 with the gate's Gateway timeout body
	outCut                      // a response cut mid-body, and the client could tell
	outNetErr                   // no answer: refused, reset, timed out; WebSocket dropped
	outWrong                    // a wrong answer (see judgeRoute, judgeForward)
	out500                      // 500
	outOther                    // any other status
	numOutcomes
)

var outcomeNames = [numOutcomes]string{"ok", "forwarded", "503 by policy", "502", "504", "cut", "no answer", "WRONG", "500", "other"}

// result is one request or message: when it started and ended, relative to
// the scenario's start.
type result struct {
	start, end time.Duration
	class      class
	out        outcome
	status     int16
	refused    bool // no answer because the connection was refused
}

// loadConfig sizes the steady load: workers per class, each paced at a rate
// (requests or messages per second).
type loadConfig struct {
	routeWorkers, forwardWorkers, wsConns int
	routeRate, forwardRate, wsRate        float64
}

func (c loadConfig) String() string {
	return fmt.Sprintf("%d sessions/info workers × %.0f req/s (80%% valid, 10%% another user's session, 10%% wrong token; %d users), "+
		"%d forwarding workers × %.0f req/s (REST GETs; every 5th a 32 KiB upload, every 10th a 256 KiB download), "+
		"%d WebSockets × %.0f echo messages/s",
		c.routeWorkers, c.routeRate, numUsers, c.forwardWorkers, c.forwardRate, c.wsConns, c.wsRate)
}

const numUsers = 200

// loadGen drives steady load at a gate until stopped and records every
// result.
type loadGen struct {
	addr   string
	data   *dataset
	t0     time.Time
	client *http.Client
	stopc  chan struct{}
	wg     sync.WaitGroup

	mu      sync.Mutex
	results []result
	wrong   []string // the first few wrong answers, described
	wsEnds  []wsEnd
}

func newHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			IdleConnTimeout:     30 * time.Second,
			DisableCompression:  true,
		},
	}
}

// startLoad starts the workers; t0 is the scenario's time origin.
func startLoad(addr string, data *dataset, cfg loadConfig, t0 time.Time) *loadGen {
	l := &loadGen{addr: addr, data: data, t0: t0, client: newHTTPClient(), stopc: make(chan struct{})}
	for i := range cfg.routeWorkers {
		l.run(cfg.routeRate, func(rng *rand.Rand, n int) []result { return []result{l.route(rng)} }, uint64(i))
	}
	for i := range cfg.forwardWorkers {
		l.run(cfg.forwardRate, func(rng *rand.Rand, n int) []result { return []result{l.forward(i, n)} }, uint64(100+i))
	}
	for i := range cfg.wsConns {
		l.wg.Add(1)
		go l.websocket(i, cfg.wsRate)
	}
	return l
}

func (l *loadGen) since() time.Duration { return time.Since(l.t0) }

// run paces one worker at rate per second until stopped; a slow request
// delays the next one rather than piling up.
func (l *loadGen) run(rate float64, do func(*rand.Rand, int) []result, seed uint64) {
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		rng := rand.New(rand.NewPCG(seed, 0x6a09e667))
		tick := time.NewTicker(time.Duration(float64(time.Second) / rate))
		defer tick.Stop()
		var mine []result
		defer func() { l.add(mine) }()
		for n := 0; ; n++ {
			select {
			case <-l.stopc:
				return
			case <-tick.C:
			}
			mine = append(mine, do(rng, n)...)
		}
	}()
}

func (l *loadGen) add(rs []result) {
	l.mu.Lock()
	l.results = append(l.results, rs...)
	l.mu.Unlock()
}

func (l *loadGen) noteWrong(format string, args ...any) {
	l.mu.Lock()
	if len(l.wrong) < 5 {
		l.wrong = append(l.wrong, fmt.Sprintf(format, args...))
	}
	l.mu.Unlock()
}

// stop stops every worker, closes idle connections, and returns the results.
func (l *loadGen) stop() []result {
	close(l.stopc)
	l.wg.Wait()
	l.client.CloseIdleConnections()
	return l.results
}

// route sends one sessions/info request: mostly a user's own session, some
// another user's session with a valid token (must be 404, never the other
// user's document), some a wrong token (must be 401).
func (l *loadGen) route(rng *rand.Rand) result {
	n := len(l.data.logins)
	i := rng.IntN(n)
	u := &l.data.logins[i]
	token, sessionID := u.token, u.sessions[rng.IntN(2)]
	switch rng.IntN(10) {
	case 0: // another user's session, with a valid token of this one
		sessionID = l.data.logins[(i+1+rng.IntN(n-1))%n].sessions[0]
	case 1:
		token = "wrong-" + token
	}
	wantStatus, wantBody := l.data.answer(u.userID, token, sessionID)

	r := result{class: classRoute, start: l.since()}
	req, _ := http.NewRequest("GET", "http://"+l.addr+"/api/v1/sessions/info?sessionId="+sessionID, nil)
	req.Header.Set("X-User-Id", u.userID)
	req.Header.Set("X-Auth-Token", token)
	resp, err := l.client.Do(req)
	if err != nil {
		r.end, r.out, r.refused = l.since(), outNetErr, isRefused(err)
		return r
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.end, r.status = l.since(), int16(resp.StatusCode)
	forwarded := resp.Header.Get("X-Served-By") == "upstream"
	switch {
	case err != nil:
		r.out = outCut
	case resp.StatusCode == wantStatus && string(body) == wantBody:
		r.out = outOK
		if forwarded {
			r.out = outForwarded
		}
	case resp.StatusCode == 503 && string(body) == bodyUnavailable:
		r.out = outPolicy503
	case resp.StatusCode == 502 && string(body) == bodyBadGateway:
		r.out = out502
	case resp.StatusCode == 504 && string(body) == bodyGWTimeout:
		r.out = out504
	case resp.StatusCode == 500:
		r.out = out500
	case resp.StatusCode == 200, resp.StatusCode == 401, resp.StatusCode == 404:
		// A 401/404 for a login and session that exist, a 200 for a
		// wrong token or another user's session, a body that is not the
		// right document: all wrong, whatever happened to Redis.
		r.out = outWrong
		l.noteWrong("sessions/info user=%s want %d, got %d %.80q (forwarded %v)", u.userID, wantStatus, resp.StatusCode, body, forwarded)
	default:
		r.out = outOther
	}
	return r
}

// forward sends one forwarded request: a REST GET, every 5th a 32 KiB
// upload, every 10th a 256 KiB download.
func (l *loadGen) forward(worker, n int) result {
	var req *http.Request
	var want []byte
	switch {
	case n%10 == 0:
		req, _ = http.NewRequest("GET", "http://"+l.addr+"/download?bytes=262144", nil)
		want = pattern(262144)
	case n%5 == 0:
		req, _ = http.NewRequest("POST", "http://"+l.addr+"/upload", bytes.NewReader(pattern(32<<10)))
		req.Header.Set("Content-Type", "application/octet-stream")
		want = []byte(`{"received":32768}`)
	default:
		q := "w=" + strconv.Itoa(worker) + "&n=" + strconv.Itoa(n)
		req, _ = http.NewRequest("GET", "http://"+l.addr+"/api/v1/channels.list?"+q, nil)
		want = []byte(plainBody("/api/v1/channels.list", q))
	}
	r := result{class: classForward, start: l.since()}
	resp, err := l.client.Do(req)
	if err != nil {
		r.end, r.out, r.refused = l.since(), outNetErr, isRefused(err)
		return r
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	r.end, r.status = l.since(), int16(resp.StatusCode)
	switch {
	case resp.StatusCode == 200 && err != nil:
		r.out = outCut
	case err != nil:
		r.out = outNetErr
	case resp.StatusCode == 200 && bytes.Equal(body, want):
		r.out = outOK
	case resp.StatusCode == 200:
		r.out = outWrong // e.g. a cut body passed off as complete
		l.noteWrong("%s %s: got 200 with %d bytes, want %d bytes", req.Method, req.URL.Path, len(body), len(want))
	case resp.StatusCode == 502 && string(body) == bodyBadGateway:
		r.out = out502
	case resp.StatusCode == 504 && string(body) == bodyGWTimeout:
		r.out = out504
	case resp.StatusCode == 500:
		r.out = out500
	default:
		r.out = outOther
	}
	return r
}

// wsEnd is a tunnel the gate (or the upstream) ended: when, and the close
// code the client got (-1: the connection dropped without a close frame).
type wsEnd struct {
	at   time.Duration
	code int
}

// websocket keeps one tunnel open and echoes a message through it at rate
// per second, reconnecting (after 200 ms) when it breaks.
func (l *loadGen) websocket(i int, rate float64) {
	defer l.wg.Done()
	var mine []result
	defer func() { l.add(mine) }()
	dialer := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	interval := time.Duration(float64(time.Second) / rate)
	for n := 0; ; {
		select {
		case <-l.stopc:
			return
		default:
		}
		start := l.since()
		ws, resp, err := dialer.Dial("ws://"+l.addr+"/websocket", nil)
		if err != nil {
			r := result{class: classWS, start: start, end: l.since(), out: outNetErr}
			if resp != nil {
				r.status = int16(resp.StatusCode)
				switch resp.StatusCode {
				case 502:
					r.out = out502
				case 504:
					r.out = out504
				case 500:
					r.out = out500
				default:
					r.out = outOther
				}
			}
			mine = append(mine, r)
			select {
			case <-l.stopc:
				return
			case <-time.After(200 * time.Millisecond):
			}
			continue
		}
		tick := time.NewTicker(interval)
	conn:
		for {
			select {
			case <-l.stopc:
				ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
				ws.Close()
				tick.Stop()
				return
			case <-tick.C:
			}
			n++
			msg := "ws-" + strconv.Itoa(i) + "-" + strconv.Itoa(n)
			r := result{class: classWS, start: l.since(), status: 101}
			ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
			ws.SetReadDeadline(time.Now().Add(5 * time.Second))
			err := ws.WriteMessage(websocket.TextMessage, []byte(msg))
			var got []byte
			if err == nil {
				_, got, err = ws.ReadMessage()
			}
			r.end = l.since()
			switch {
			case err != nil:
				r.out = outNetErr
			case string(got) != msg:
				r.out = outWrong
				l.noteWrong("websocket: sent %q, got %q", msg, got)
			default:
				r.out = outOK
			}
			mine = append(mine, r)
			if err != nil {
				code := -1
				if ce := (*websocket.CloseError)(nil); errors.As(err, &ce) {
					code = ce.Code
				}
				l.mu.Lock()
				l.wsEnds = append(l.wsEnds, wsEnd{r.end, code})
				l.mu.Unlock()
				break conn
			}
		}
		tick.Stop()
		ws.Close()
	}
}

// isRefused reports whether err is a refused connection (the listener is
// closed), as opposed to one cut after it was accepted.
func isRefused(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
