package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
	"github.com/sessiongate/sessiongate/proxy/internal/h1"
	"github.com/sessiongate/sessiongate/proxy/internal/loop"
)

// WebSocket tunnels (docs/forwarding.md). A request carrying `Upgrade: websocket` on any
// path — Rocket.Chat's DDP endpoint /websocket and SockJS's
// /sockjs/<server>/<session>/websocket alike — is sent to the upstream on a
// connection of its own. If the upstream switches protocols (101), its
// response head is relayed to the client as it came, and from then on the two
// TCP connections are joined byte for byte: frames are never parsed, so
// permessage-deflate, subprotocols and whatever Rocket.Chat speaks pass
// untouched. Any other answer is relayed as an ordinary response.
//
// Memory per idle tunnel is what limits how many clients one sidecar holds
// (the target is < 20 KiB). With the event loop running, an open tunnel is
// handed to it (loop.Engine.Join): no goroutine, no buffer while idle. The
// rest (an https:// upstream, the loop off) are copied here, and an idle
// one keeps no buffer either: each direction is one goroutine parked in
// the netpoller until its source is readable (readWaiter), and only then
// borrows a copy buffer from a pool — the idea
// behind Mail.ru's "A Million WebSockets and Go" (Kamardin, 2017), kept to
// the standard netpoller. fasthttp's hijack goroutine, request context and
// 16 KiB read buffer are given back as soon as the tunnel starts, which
// needs Server.KeepHijackedConns (see prepareServer).

const (
	// maxResponseHead bounds the upstream's response head; the pooled
	// reader that parses it is this large. A 101 head is a few hundred bytes.
	maxResponseHead = 8 << 10
	// maxRefusalBody bounds the body of a refused upgrade relayed to the
	// client (Rocket.Chat's refusals are one-line texts).
	maxRefusalBody = 1 << 20
	// copyBufferSize is the size of the pooled buffers tunnels copy through.
	copyBufferSize = 32 << 10
	// maxInterimResponses bounds 1xx answers (other than 101) skipped before
	// the final one.
	maxInterimResponses = 8
	// closeTick is how often closeAll closes the next share of tunnels.
	closeTick = 10 * time.Millisecond
	// defaultCloseSpread is the spread of closeAll when ctx has no deadline.
	defaultCloseSpread = time.Second
)

var (
	copyBuffers = sync.Pool{New: func() any { b := make([]byte, copyBufferSize); return &b }}
	headReaders sync.Pool // *bufio.Reader of maxResponseHead bytes
	headBuffers = sync.Pool{New: func() any { b := make([]byte, 0, 2048); return &b }}

	// errTunnelsClosed refuses a tunnel that would start once closeAll began.
	errTunnelsClosed = errors.New("proxy: websocket tunnels closed")
	// errBadResponseHead is an upstream answer that is not HTTP/1.x.
	errBadResponseHead = fmt.Errorf("%w head", h1.ErrBadResponse)
	// aLongTimeAgo is a deadline already passed: reads return at once.
	aLongTimeAgo = time.Unix(1, 0)
)

// tunnels opens and tracks WebSocket tunnels. All methods are safe for
// concurrent use.
type tunnels struct {
	dialer     *upstreamDialer
	headerWait time.Duration // upstream.response_header_timeout
	log        *zap.Logger
	metrics    *metrics

	// keepHijacked is true once prepareServer made fasthttp leave hijacked
	// connections open: the hijack handler then returns at once instead of
	// living as long as the tunnel.
	keepHijacked bool

	// engine, when set, runs the event loops: a tunnel whose two ends
	// are plain TCP sockets is joined there instead of getting two
	// goroutines (loop.Engine.Join).
	engine atomic.Pointer[loop.Engine]

	mu      sync.Mutex
	open    map[*tunnel]struct{}
	closing bool          // closeAll began: no new tunnel starts
	drained chan struct{} // closed when closing and open is empty
}

// tunnel is one joined pair of connections, copied either by the event
// loop (onLoop) or by a goroutine per direction.
type tunnel struct {
	set      *tunnels
	client   net.Conn // the raw client connection, not fasthttp's wrapper
	upstream net.Conn
	started  time.Time
	up, down atomic.Int64 // bytes client→upstream, upstream→client
	pumps    atomic.Int32 // directions still copying

	mu     sync.Mutex
	closed bool         // close was called
	onLoop *loop.Tunnel // set once the loop took the tunnel
}

// newTunnels joins WebSocket clients to the upstream through dialer;
// headerWait bounds the wait for the upstream's handshake answer
// (upstream.response_header_timeout).
func newTunnels(headerWait time.Duration, dialer *upstreamDialer, log *zap.Logger, m *metrics) *tunnels {
	t := &tunnels{
		dialer:     dialer,
		headerWait: headerWait,
		log:        log.Named("websocket"),
		metrics:    m,
		open:       make(map[*tunnel]struct{}),
	}
	return t
}

// prepareServer makes s leave hijacked connections open after the hijack
// handler returns (fasthttp.Server.KeepHijackedConns), so a tunnel does not
// pin fasthttp's per-connection goroutine, RequestCtx and read buffer for
// its whole life. Call it before s serves. Without it tunnels still work,
// at several more KiB per tunnel.
func (t *tunnels) prepareServer(s *fasthttp.Server) {
	s.KeepHijackedConns = true
	t.keepHijacked = true
}

// upstreamDialAddr is u's host:port, with the scheme's default port.
func upstreamDialAddr(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// serve runs the handshake with the upstream and, on 101, hands the client
// connection to a tunnel. It answers 502 when the upstream cannot be
// reached or breaks the connection, 504 when its answer does not come
// within upstream.response_header_timeout, and relays any other answer.
//
// appendHead appends the handshake's head for the upstream (the proxy's
// appendRequestHead with Upgrade kept); a head it refuses (request
// smuggling shapes) is answered 400 and goes nowhere.
func (t *tunnels) serve(ctx *fasthttp.RequestCtx, appendHead func(dst []byte, ctx *fasthttp.RequestCtx) ([]byte, error)) {
	bp := headBuffers.Get().(*[]byte)
	req, err := appendHead((*bp)[:0], ctx)
	defer func() { *bp = req[:0]; headBuffers.Put(bp) }()
	if err != nil {
		t.log.Debug("handshake refused", zap.Error(err))
		refuse(ctx, fasthttp.StatusBadRequest)
		return
	}

	up, err := t.dial()
	if err != nil {
		t.fail(ctx, exchange.ClassifyConnect(err))
		return
	}
	if t.headerWait > 0 {
		up.SetDeadline(time.Now().Add(t.headerWait))
	}
	br := acquireHeadReader(up)
	head, err := writeAndReadHead(up, br, req)
	if err != nil {
		releaseHeadReader(br)
		up.Close()
		t.upstreamFailed(ctx, err)
		return
	}
	if status, _ := parseStatusLine(head); status != fasthttp.StatusSwitchingProtocols {
		t.relayRefusal(ctx, br)
		releaseHeadReader(br)
		up.Close()
		return
	}
	if err := checkSwitchHead(head); err != nil {
		releaseHeadReader(br)
		up.Close()
		t.fail(ctx, exchange.Failure(exchange.FailProtocol, err))
		return
	}

	// The upstream may have sent its first frames right behind the head
	// (Rocket.Chat's DDP server greets with {"server_id":"0"}, SockJS with
	// "o"): they go to the client after the head, in order.
	// head is still in br's buffer, at its start: take it and what follows.
	first, _ := br.Peek(br.Buffered())
	first = bytes.Clone(first)
	releaseHeadReader(br)
	up.SetDeadline(time.Time{})

	// fasthttp writes nothing: the client gets the upstream's head exactly.
	// (In the rare case fasthttp skips the hijack handler — it could not
	// clear the connection's deadlines — up is left to its finalizer.)
	ctx.Response.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	ctx.HijackSetNoResponse(true)
	ctx.Hijack(func(c net.Conn) { t.join(c, up, first) })
}

// dial connects to the upstream within upstream.dial_timeout, including
// the TLS handshake for an https upstream.
func (t *tunnels) dial() (net.Conn, error) { return t.dialer.dial(context.Background()) }

// writeAndReadHead sends the handshake and returns the upstream's final
// response head (up to and including the blank line), still in br's buffer:
// valid until br is read again. Interim 1xx responses other than 101 are
// skipped (RFC 9110 §15.2).
func writeAndReadHead(up net.Conn, br *bufio.Reader, req []byte) ([]byte, error) {
	if _, err := up.Write(req); err != nil {
		return nil, err
	}
	for range maxInterimResponses {
		head, err := peekResponseHead(br)
		if err != nil {
			return nil, err
		}
		status, ok := parseStatusLine(head)
		if !ok {
			return nil, errBadResponseHead
		}
		if status >= 200 || status == fasthttp.StatusSwitchingProtocols {
			return head, nil
		}
		br.Discard(len(head))
	}
	return nil, errBadResponseHead
}

// errNotWebSocket is a 101 answer to a WebSocket handshake that does not
// switch to websocket.
var errNotWebSocket = fmt.Errorf("%w: 101 does not switch to websocket", h1.ErrBadResponse)

// checkSwitchHead checks a 101 answer to a WebSocket handshake before it is
// relayed as it came: the head must pass the check every upstream head
// passes (h1.FilterResponseHead) and
// hold one Upgrade field whose value is "websocket" (RFC 6455 §4.2.2) —
// a 101 to h2c or to nothing is not a WebSocket, and a tunnel would join
// the client to whatever it is (docs/forwarding.md: 502).
func checkSwitchHead(head []byte) error {
	bp := headBuffers.Get().(*[]byte)
	out, _, _, err := h1.FilterResponseHead((*bp)[:0], head)
	*bp = out[:0]
	headBuffers.Put(bp)
	if err != nil {
		return err
	}
	upgrades, websocket := 0, false
	_, rest := h1.NextLine(head)
	for len(rest) > 0 {
		var line []byte
		line, rest = h1.NextLine(rest)
		if c := bytes.IndexByte(line, ':'); c > 0 && h1.ClassifyField(line[:c]) == h1.FieldUpgrade {
			upgrades++
			websocket = h1.EqualFoldASCII(h1.TrimFieldValue(line[c+1:]), "websocket")
		}
	}
	if upgrades != 1 || !websocket {
		return errNotWebSocket
	}
	return nil
}

// upstreamFailed answers the client after a failed handshake by the
// rulebook's classes, as forwarding does: 504 when the upstream did not
// answer in time, else 502 (protocol for a malformed head, reset for a
// close).
func (t *tunnels) upstreamFailed(ctx *fasthttp.RequestCtx, err error) {
	t.fail(ctx, exchange.Classify(err))
}

// fail answers a handshake whose upstream failed, as the forwarder does
// (forwarder.fail).
func (t *tunnels) fail(ctx *fasthttp.RequestCtx, e *exchange.Error) {
	t.metrics.upstreamFailure(e.Kind)
	t.log.Debug("upstream handshake failed", zap.String("upstream", t.dialer.addr), zap.Error(e))
	status, body := e.Kind.Answer()
	writeError(ctx, status, body)
}

// relayRefusal relays an upstream answer other than 101 (400, 403, 426...)
// as a normal response: status, headers minus hop-by-hop ones, body.
func (t *tunnels) relayRefusal(ctx *fasthttp.RequestCtx, br *bufio.Reader) {
	resp := &ctx.Response
	resp.Header.DisableNormalizing()
	if err := resp.ReadLimitBody(br, maxRefusalBody); err != nil {
		resp.Reset()
		t.upstreamFailed(ctx, err)
		return
	}
	// RFC 9110 §15.5.22: a 426 names the protocols to upgrade to in its
	// Upgrade header; it is the client's cue, so it stays.
	if err := h1.RemoveHopByHopResponse(&resp.Header, resp.StatusCode() == fasthttp.StatusUpgradeRequired); err != nil {
		resp.Reset()
		t.upstreamFailed(ctx, err)
		return
	}
	t.log.Debug("upstream refused upgrade", zap.Int("status", resp.StatusCode()))
}

// join runs the tunnel on the hijacked client connection c. first is the
// upstream's response head plus any bytes that came behind it.
func (t *tunnels) join(c, up net.Conn, first []byte) {
	client := c
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		client = u.UnsafeConn()
	}
	// From here the client sends WebSocket frames, not requests.
	stopFraming(client)
	tn := &tunnel{set: t, client: client, upstream: up, started: time.Now()}
	if err := t.add(tn); err != nil {
		client.Close()
		up.Close()
		return
	}
	if _, err := client.Write(first); err != nil {
		tn.close()
		t.remove(tn)
		return
	}
	tn.down.Add(int64(len(first)))
	if client != c {
		// Bytes the client sent behind its handshake sit in fasthttp's read
		// buffer, behind c; hand them over before reading the socket itself.
		if err := tn.drainBuffered(c); err != nil {
			tn.close()
			t.remove(tn)
			return
		}
	}
	if t.keepHijacked && tn.joinLoop() {
		return
	}
	tn.pumps.Store(2)
	go tn.pump(client, up, &tn.down)
	if t.keepHijacked {
		go tn.pump(up, client, &tn.up)
		return
	}
	// fasthttp closes c when this handler returns: copy in this goroutine
	// until the tunnel ends.
	tn.pump(up, client, &tn.up)
}

// drainBuffered copies to the upstream what fasthttp's reader behind c has
// already buffered, without waiting for the network: a read deadline in the
// past makes the socket read fail at once once the buffer is empty.
func (tn *tunnel) drainBuffered(c net.Conn) error {
	tn.client.SetReadDeadline(aLongTimeAgo)
	bp := copyBuffers.Get().(*[]byte)
	defer copyBuffers.Put(bp)
	for {
		n, err := c.Read(*bp)
		if n > 0 {
			if _, werr := tn.upstream.Write((*bp)[:n]); werr != nil {
				return werr
			}
			tn.up.Add(int64(n))
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return tn.client.SetReadDeadline(time.Time{})
		}
		if err != nil {
			return err
		}
	}
}

// pump copies src to dst until either fails or src ends, then closes the
// tunnel: WebSocket has its own close handshake, so a half-closed tunnel has
// nothing left to carry. While src is idle it holds no buffer.
func (tn *tunnel) pump(dst, src net.Conn, count *atomic.Int64) {
	defer tn.pumpDone()
	defer tn.close()
	w := newReadWaiter(src)
	for {
		if err := w.wait(); err != nil {
			return
		}
		bp := copyBuffers.Get().(*[]byte)
		n, err := src.Read(*bp)
		if n > 0 {
			if _, werr := dst.Write((*bp)[:n]); werr != nil {
				copyBuffers.Put(bp)
				return
			}
			count.Add(int64(n))
		}
		copyBuffers.Put(bp)
		if err != nil {
			return
		}
	}
}

// joinLoop hands the tunnel to the event loop, when there is one and both
// ends are plain TCP sockets with nothing buffered in front of them; false
// leaves it to the pumps.
func (tn *tunnel) joinLoop() bool {
	e := tn.set.engine.Load()
	if e == nil {
		return false
	}
	up, ok := tn.upstream.(*net.TCPConn)
	if !ok {
		return false
	}
	// With the loops running, every client connection is a framingConn
	// (Serve).
	fc, ok := tn.client.(*framingConn)
	if !ok {
		return false
	}
	if pc, ok := fc.r.(*loop.PrefixConn); ok && pc.Buffered() > 0 {
		return false
	}
	client := fc.TCPConn
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.closed {
		return false // the pumps end at once on the closed connections
	}
	lt, err := e.Join(client, up, tn.loopDone)
	if err != nil {
		tn.set.log.Debug("tunnel stays off the event loop", zap.Error(err))
		return false
	}
	tn.onLoop = lt
	return true
}

// loopDone retires a tunnel the loop carried, with the bytes it carried.
func (tn *tunnel) loopDone(up, down int64) {
	tn.up.Add(up)
	tn.down.Add(down)
	tn.retire()
}

// close closes both connections, which ends the tunnel.
func (tn *tunnel) close() {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	if tn.closed {
		return
	}
	tn.closed = true
	if tn.onLoop != nil {
		tn.onLoop.Close()
		return
	}
	tn.client.Close()
	tn.upstream.Close()
}

// pumpDone retires the tunnel when its last pump ends.
func (tn *tunnel) pumpDone() {
	if tn.pumps.Add(-1) != 0 {
		return
	}
	tn.retire()
}

func (tn *tunnel) retire() {
	tn.set.remove(tn)
	tn.set.log.Debug("tunnel closed",
		zap.Duration("duration", time.Since(tn.started)),
		zap.Int64("bytes_up", tn.up.Load()),
		zap.Int64("bytes_down", tn.down.Load()),
	)
}

func (t *tunnels) add(tn *tunnel) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return errTunnelsClosed
	}
	t.open[tn] = struct{}{}
	t.metrics.tunnelsOpen.Inc()
	t.metrics.tunnelsTotal.Inc()
	return nil
}

func (t *tunnels) remove(tn *tunnel) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.open, tn)
	t.metrics.tunnelsOpen.Dec()
	if t.closing && len(t.open) == 0 && t.drained != nil {
		close(t.drained)
		t.drained = nil
	}
}

func (t *tunnels) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.open)
}

// closeAll refuses new tunnels and closes the open ones gradually, spread
// evenly over half of ctx's remaining time (defaultCloseSpread without a
// deadline), so that clients — which reconnect at once — come back to the
// other replicas over that window instead of all in the same instant. It
// returns when every tunnel is closed, or closes the rest at once and
// returns ctx's error when ctx ends first.
func (t *tunnels) closeAll(ctx context.Context) error {
	t.mu.Lock()
	t.closing = true
	victims := make([]*tunnel, 0, len(t.open))
	for tn := range t.open {
		victims = append(victims, tn)
	}
	var drained chan struct{}
	if len(t.open) > 0 {
		if t.drained == nil {
			t.drained = make(chan struct{})
		}
		drained = t.drained
	}
	t.mu.Unlock()
	if drained == nil {
		return nil
	}

	spread := defaultCloseSpread
	if deadline, ok := ctx.Deadline(); ok {
		spread = time.Until(deadline) / 2
	}
	t.log.Info("closing websocket tunnels", zap.Int("tunnels", len(victims)), zap.Duration("spread", spread))
	start := time.Now()
	tick := time.NewTicker(closeTick)
	defer tick.Stop()
	for closed := 0; closed < len(victims); {
		// The first closes at once, the last at start+spread.
		due := len(victims)
		if elapsed := time.Since(start); spread > 0 && elapsed < spread {
			due = 1 + int(int64(len(victims)-1)*int64(elapsed)/int64(spread))
		}
		for ; closed < due; closed++ {
			victims[closed].close()
		}
		if closed == len(victims) {
			break
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
			for _, tn := range victims[closed:] {
				tn.close()
			}
			return ctx.Err()
		}
	}
	select {
	case <-drained:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func acquireHeadReader(c net.Conn) *bufio.Reader {
	if br, ok := headReaders.Get().(*bufio.Reader); ok {
		br.Reset(c)
		return br
	}
	return bufio.NewReaderSize(c, maxResponseHead)
}

func releaseHeadReader(br *bufio.Reader) {
	br.Reset(nil)
	headReaders.Put(br)
}

// peekResponseHead returns the response head at the start of br, up to and
// including the blank line, without consuming it. A head larger than br's
// buffer is an error.
func peekResponseHead(br *bufio.Reader) ([]byte, error) {
	n := 1
	for {
		buf, err := br.Peek(n)
		if i := bytes.Index(buf, []byte("\r\n\r\n")); i >= 0 {
			return buf[:i+4], nil
		}
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return nil, errBadResponseHead
			}
			if err == io.EOF {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
		// Peek blocks until n bytes are there: ask for one more than we
		// have, and take whatever else has arrived meanwhile.
		n = max(len(buf)+1, br.Buffered())
	}
}

// parseStatusLine returns the status code of an HTTP/1.x response head,
// read from its first line with the parser every upstream head goes
// through (h1.ParseStatusLine).
func parseStatusLine(head []byte) (int, bool) {
	line, _ := h1.NextLine(head)
	return h1.ParseStatusLine(line)
}
