//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sessiongate/sessiongate/bench/internal/proc"
)

// upstreamMode is how the stand-in Rocket.Chat behaves.
type upstreamMode int32

const (
	modeNormal upstreamMode = iota
	// modeHang accepts connections and reads requests but never answers,
	// until the mode changes (a wedged server).
	modeHang
	// modeCut sends the head and half the body of every plain GET answer,
	// then cuts the connection (a server that crashes mid-response).
	modeCut
)

// standIn is the stand-in Rocket.Chat server, in the runner's process, on a
// fixed loopback address so it can be stopped and started again:
//
//	GET  /api/v1/sessions/info  Rocket.Chat's own answer from the dataset
//	POST /upload                reads the body, answers {"received":N}
//	GET  /download?bytes=N      N bytes of a known pattern
//	GET  /longpoll?ms=N         answers {} after N ms (a SockJS long-poll)
//	GET  /websocket             WebSocket echo
//	GET  anything else          {"path":...,"query":...,"success":true}
//
// Every answer carries X-Served-By: upstream, so the load generator can
// tell a forwarded sessions/info answer from the gate's own.
type standIn struct {
	addr     string
	data     *dataset
	upgrader websocket.Upgrader
	mode     atomic.Int32
	cuts     atomic.Int64

	mu     sync.Mutex
	srv    *http.Server
	ws     map[*websocket.Conn]struct{}
	unhang chan struct{} // closed when hang mode ends
}

func newStandIn(data *dataset) (*standIn, error) {
	addr, err := proc.FreeAddr()
	if err != nil {
		return nil, err
	}
	u := &standIn{addr: addr, data: data, ws: map[*websocket.Conn]struct{}{}, unhang: make(chan struct{})}
	u.upgrader.CheckOrigin = func(*http.Request) bool { return true }
	return u, u.start()
}

func (u *standIn) url() string { return "http://" + u.addr }

// start listens again on the stand-in's address, retrying while the port
// is still held.
func (u *standIn) start() error {
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if ln, err = net.Listen("tcp", u.addr); err == nil {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("stand-in upstream: %w", err)
	}
	srv := &http.Server{Handler: u, ReadHeaderTimeout: 30 * time.Second}
	u.mu.Lock()
	u.srv = srv
	u.mu.Unlock()
	go srv.Serve(ln)
	return nil
}

// stop closes the listener and every connection, WebSockets included, as a
// server process that died would.
func (u *standIn) stop() {
	u.mu.Lock()
	srv := u.srv
	u.srv = nil
	for ws := range u.ws {
		ws.NetConn().Close()
	}
	u.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

func (u *standIn) setMode(m upstreamMode) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if upstreamMode(u.mode.Swap(int32(m))) == modeHang && m != modeHang {
		close(u.unhang)
		u.unhang = make(chan struct{})
	}
}

func (u *standIn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Served-By", "upstream")
	mode := upstreamMode(u.mode.Load())
	if mode == modeHang {
		u.mu.Lock()
		unhang := u.unhang
		u.mu.Unlock()
		select {
		case <-unhang:
		case <-r.Context().Done():
			return
		}
	}
	switch r.URL.Path {
	case "/websocket":
		u.echo(w, r)
	case "/api/v1/sessions/info":
		status, body := u.data.answer(r.Header.Get("X-User-Id"), r.Header.Get("X-Auth-Token"), r.URL.Query().Get("sessionId"))
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		io.WriteString(w, body)
	case "/upload":
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"received":%d}`, n)
	case "/longpoll":
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		select {
		case <-time.After(time.Duration(ms) * time.Millisecond):
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, "{}")
		case <-r.Context().Done():
		}
	case "/download":
		n, _ := strconv.Atoi(r.URL.Query().Get("bytes"))
		u.write(w, mode, "application/octet-stream", pattern(n))
	default:
		io.Copy(io.Discard, r.Body)
		u.write(w, mode, "application/json", []byte(plainBody(r.URL.Path, r.URL.RawQuery)))
	}
}

// write sends body, or in cut mode half of it before cutting the
// connection: every other cut answer is chunked, the rest announce their
// full Content-Length.
func (u *standIn) write(w http.ResponseWriter, mode upstreamMode, contentType string, body []byte) {
	w.Header().Set("Content-Type", contentType)
	if mode != modeCut {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Write(body)
		return
	}
	if u.cuts.Add(1)%2 == 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.Write(body[:len(body)/2])
	w.(http.Flusher).Flush()
	panic(http.ErrAbortHandler) // net/http cuts the connection, silently
}

func (u *standIn) echo(w http.ResponseWriter, r *http.Request) {
	ws, err := u.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	u.mu.Lock()
	u.ws[ws] = struct{}{}
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.ws, ws)
		u.mu.Unlock()
		ws.Close()
	}()
	for {
		mt, msg, err := ws.ReadMessage()
		if err != nil {
			return
		}
		if err := ws.WriteMessage(mt, msg); err != nil {
			return
		}
	}
}

// plainBody is the stand-in's answer to a plain request.
func plainBody(path, query string) string {
	return `{"path":` + strconv.Quote(path) + `,"query":` + strconv.Quote(query) + `,"success":true}`
}

var patterns sync.Map // size → []byte

// pattern returns n bytes of a fixed, position-dependent pattern, so a
// shifted or spliced body does not compare equal.
func pattern(n int) []byte {
	if b, ok := patterns.Load(n); ok {
		return b.([]byte)
	}
	var buf bytes.Buffer
	for i := 0; buf.Len() < n; i++ {
		fmt.Fprintf(&buf, "%08x\n", i)
	}
	b := buf.Bytes()[:n]
	patterns.Store(n, b)
	return b
}
