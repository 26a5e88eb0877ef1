package demo

import (
	"net/http"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/zap"
)

// UpstreamHeader marks every answer of the stand-in upstream, so a person
// (or a test) reading `curl -i` sees which answers were forwarded.
const UpstreamHeader = "X-Sessiongate-Demo"

// UpstreamVersion is what the stand-in's /api/info reports: shaped like a
// Rocket.Chat version, marked as the demo's.
const UpstreamVersion = "6.13.0-sessiongate-demo"

// upstream is a stand-in Rocket.Chat: a handful of routes answered the way
// the real server answers them, enough to see forwarding work.
type upstream struct {
	mux *http.ServeMux
	log *zap.Logger

	mu    sync.Mutex
	conns map[*websocket.Conn]struct{} // open WebSockets, closed by closeAll
}

func newUpstream(log *zap.Logger) *upstream {
	u := &upstream{mux: http.NewServeMux(), log: log, conns: map[*websocket.Conn]struct{}{}}
	u.mux.HandleFunc("GET /api/info", u.info)
	u.mux.HandleFunc("GET /api/v1/me", u.me)
	u.mux.HandleFunc("/websocket", u.websocket)
	u.mux.HandleFunc("/", u.notFound)
	return u
}

func (u *upstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set(UpstreamHeader, "stand-in Rocket.Chat")
	u.mux.ServeHTTP(w, r)
}

// info answers like Rocket.Chat's public GET /api/info.
func (u *upstream) info(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, []byte(`{"version":"`+UpstreamVersion+`","success":true}`))
}

// me answers like Rocket.Chat's GET /api/v1/me: 401 with the documented body
// unless X-User-Id and X-Auth-Token are the demo user's.
func (u *upstream) me(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("X-User-Id") != UserID || r.Header.Get("X-Auth-Token") != Token {
		writeJSON(w, http.StatusUnauthorized, []byte(`{"status":"error","message":"You must be logged in to do this."}`))
		return
	}
	writeJSON(w, http.StatusOK, []byte(`{"_id":"`+UserID+`","username":"demo","name":"sessiongate demo user",`+
		`"status":"online","active":true,"roles":["user","admin"],"success":true}`))
}

// notFound answers every other path.
func (u *upstream) notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, []byte(`{"success":false,"error":"Not found (sessiongate demo stand-in upstream)"}`))
}

var upgrader = websocket.Upgrader{
	// A browser page on any origin may try the demo; it only listens on
	// loopback and echoes.
	CheckOrigin: func(*http.Request) bool { return true },
}

// websocket echoes every message back, text or binary, standing in for
// Rocket.Chat's DDP endpoint.
func (u *upstream) websocket(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered 400
	}
	u.mu.Lock()
	u.conns[c] = struct{}{}
	u.mu.Unlock()
	defer func() {
		u.mu.Lock()
		delete(u.conns, c)
		u.mu.Unlock()
		c.Close()
	}()
	c.SetReadLimit(16 << 20)
	for {
		kind, msg, err := c.ReadMessage()
		if err != nil {
			return
		}
		c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err := c.WriteMessage(kind, msg); err != nil {
			return
		}
	}
}

// closeAll closes the open WebSockets: http.Server.Shutdown does not track
// hijacked connections.
func (u *upstream) closeAll() {
	u.mu.Lock()
	defer u.mu.Unlock()
	for c := range u.conns {
		c.Close()
	}
}

// writeJSON answers with a JSON body written out by hand: Rocket.Chat puts
// "success" last, and encoding/json would sort a map's members.
func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}
