//go:build linux

package loop

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"golang.org/x/sys/unix"

	"github.com/sessiongate/sessiongate/proxy/internal/exchange"
	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// The framing of a body sent to the client chunked.
var (
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
)

// evTick is how often a loop checks its deadlines: timeouts fire up to
// this much late.
const evTick = 50 * time.Millisecond

// evBodyMax is the largest request body the loop buffers before sending
// the request upstream; larger bodies stream on the fasthttp path.
const evBodyMax = 64 << 10

// evUpstreamBuffer is an upstream connection's read buffer in the loop: it
// bounds the response head at h1.MaxResponseHeadBytes, as on the fasthttp
// path, and a larger buffer moves large bodies in fewer system calls.
const evUpstreamBuffer = h1.MaxResponseHeadBytes + exchange.MaxBufferedBody

// Engine runs the event loops on one listener.
type Engine struct {
	o       *Options
	ln      net.Listener
	lnFile  *os.File
	reserve *fdReserve // for handovers when out of descriptors
	loops   []*evLoop
	// drained counts the loops that stopped accepting; the last one
	// closes lnFile (closing it earlier would free its descriptor number
	// for reuse while a loop may still take it for the listener).
	drained atomic.Int32
	wg      sync.WaitGroup
}

// Start starts the loops on ln, or returns nil when ln is not a plain TCP
// listener (the caller's server then serves everything). The upstream must
// be plain HTTP: the loops do not speak TLS.
func Start(ln net.Listener, o Options) (*Engine, error) {
	tl, ok := ln.(*net.TCPListener)
	if !ok {
		return nil, nil
	}
	f, err := tl.File()
	if err != nil {
		return nil, err
	}
	lnfd := int(f.Fd()) // Fd makes the descriptor blocking again
	if err := unix.SetNonblock(lnfd, true); err != nil {
		f.Close()
		return nil, err
	}
	e := &Engine{o: &o, ln: ln, lnFile: f, reserve: newFDReserve()}
	n := o.Loops
	if n <= 0 {
		n = DefaultLoops()
	}
	for i := 0; i < n; i++ {
		l, err := newLoop(e, lnfd)
		if err != nil {
			for _, l := range e.loops {
				l.closeFDs()
			}
			e.reserve.close()
			f.Close()
			return nil, err
		}
		e.loops = append(e.loops, l)
	}
	for _, l := range e.loops {
		e.wg.Add(1)
		go l.run()
	}
	return e, nil
}

// Shed asks the loops to close their idle upstream connections, to make
// room for requests waiting for one; it does not wait for them.
func (e *Engine) Shed() {
	for _, l := range e.loops {
		l.post(l.shed)
	}
}

// Shutdown stops accepting, closes idle connections, lets requests in
// flight finish and closes their connections after them, and waits for the
// joined tunnels to end (the caller closes them, see Join), until ctx ends;
// then it closes what is left.
func (e *Engine) Shutdown(ctx context.Context) error {
	defer e.reserve.close()
	e.ln.Close()
	for _, l := range e.loops {
		l.post(func() { l.drain() })
	}
	done := make(chan struct{})
	go func() { e.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	for _, l := range e.loops {
		l.post(func() { l.force() })
	}
	<-done
	return ctx.Err()
}

// evFD is what a loop knows behind a file descriptor.
type evFD interface{ event(ev uint32) }

type evLoop struct {
	e      *Engine
	o      *Options
	epfd   int
	lnfd   int
	table  []evFD
	events []unix.EpollEvent
	now    time.Time
	// epFile and epRC wrap epfd for the netpoller; waitFn polls it, with
	// its result in n and err, and counts its polls in polls.
	epFile *os.File
	epRC   syscall.RawConn
	waitFn func(fd uintptr) bool
	n      int
	err    error
	polls  int
	// clients lists the open client connections, for the deadline scan.
	clients   []*evClient
	lastScan  time.Time
	lastYield time.Time
	until     time.Time // the epoll descriptor's read deadline

	// Request head parsing: fasthttp's parser on the buffered bytes, and
	// its URI check.
	hdr fasthttp.RequestHeader
	uri fasthttp.URI
	src bytes.Reader
	br  *bufio.Reader

	free [][]byte      // client read buffers not in use
	idle []*evUpstream // idle upstream connections, most recent last
	iov  [8]unix.Iovec // writev scratch
	date []byte        // "Date: ...\r\n" for answers of our own
	dsec int64         // the second date was made for
	stop bool          // draining: connections close after their request
	dead bool          // forced: everything closed
	// acceptPace spaces failed accepts (AcceptPace).
	acceptPace AcceptPace

	mu     sync.Mutex // guards what follows
	box    []func()   // work posted from other goroutines
	parked bool       // the loop waits in the netpoller (wait)
	kicked bool       // post ended that wait
	exited bool       // the loop is gone: nothing more is run
	// posted is len(box) > 0, read by the loop without the lock.
	posted atomic.Bool

	// load counts the client connections this loop serves or is about to.
	load atomic.Int64

	// WebSocket tunnels (tunnel_linux.go): the open ones, those to pump
	// again next turn, and the read buffer they share.
	tunnels     []*evTunnel
	tunnelCount atomic.Int64 // len(tunnels), plus joins posted and not started
	again       []*evTunnel
	spare       []*evTunnel
	tbuf        []byte
}

func newLoop(e *Engine, lnfd int) (*evLoop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	l := &evLoop{
		e: e, o: e.o, epfd: epfd, lnfd: lnfd,
		events: make([]unix.EpollEvent, 256),
		br:     bufio.NewReaderSize(nil, max(e.o.MaxHeaderBytes, 4096)),
	}
	l.hdr.DisableNormalizing()
	// The epoll descriptor is itself pollable: waiting for it goes
	// through the runtime's netpoller (see wait).
	if err := unix.SetNonblock(epfd, true); err != nil {
		l.closeFDs()
		return nil, err
	}
	l.epFile = os.NewFile(uintptr(epfd), "epoll")
	if l.epRC, err = l.epFile.SyscallConn(); err != nil {
		l.closeFDs()
		return nil, err
	}
	l.waitFn = func(fd uintptr) bool {
		l.polls++
		l.n, l.err = epollPoll(int(fd), l.events)
		return l.n != 0 || l.err != nil
	}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, lnfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(lnfd)}); err != nil {
		l.closeFDs()
		return nil, err
	}
	return l, nil
}

func (l *evLoop) closeFDs() {
	if l.epFile != nil {
		l.epFile.Close()
	} else {
		unix.Close(l.epfd)
	}
}

// post runs fn on the loop's goroutine; false when the loop has ended.
//
// A loop waiting in the netpoller is woken by moving its epoll
// descriptor's read deadline into the past: the runtime readies the
// goroutine at once, on the poster's processor, where an eventfd
// write would cost two system calls and a wake-up of the thread blocked in
// the netpoller (a route's answer is posted this way on every request).
func (l *evLoop) post(fn func()) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.exited {
		return false
	}
	l.box = append(l.box, fn)
	l.posted.Store(true)
	if l.parked && !l.kicked {
		// Under the lock: the loop sets its own deadline only outside
		// a wait, so this one is never overwritten (see wait).
		l.kicked = true
		l.epFile.SetReadDeadline(kickDeadline)
	}
	return true
}

// kickDeadline is a read deadline already past.
var kickDeadline = time.Unix(1, 0)

// exit closes the loop's own descriptors once nothing can post to it.
func (l *evLoop) exit() {
	l.mu.Lock()
	l.exited = true
	box := l.box
	l.box = nil
	l.closeFDs()
	l.mu.Unlock()
	for _, fn := range box {
		fn() // dial results: their connections are closed by dialed
	}
}

func (l *evLoop) run() {
	defer l.e.wg.Done()
	defer l.exit()
	l.now = time.Now()
	l.lastScan = l.now
	for !l.dead {
		// With connections to watch, the wait ends at the next scan.
		var until time.Time
		if len(l.clients) > 0 || len(l.idle) > 0 {
			until = l.lastScan.Add(evTick)
		}
		// A loop under load never blocks, so it yields its P about
		// once a millisecond: left to the runtime, it is preempted by
		// signal every 10 ms, which took the p99 latency of forwarded
		// requests from 5 to 10 ms at 64 connections (measured). A
		// loop that parked since has yielded already (wait): under a
		// light load a yield each millisecond would only wake another
		// thread for nothing (5 % of the CPU in the rcmix case).
		if l.now.Sub(l.lastYield) > time.Millisecond {
			l.lastYield = l.now
			runtime.Gosched()
		}
		var n int
		var err error
		if len(l.again) > 0 {
			n, err = epollPoll(l.epfd, l.events) // tunnels have bytes waiting
		} else {
			n, err = l.wait(until)
		}
		if err != nil && err != unix.EINTR {
			l.o.Log.Error("event loop stopped", zap.Error(err))
			l.drain()
			l.force()
			return
		}
		l.now = time.Now()
		if l.posted.Load() {
			l.runInbox()
		}
		for i := 0; i < n; i++ {
			ev := &l.events[i]
			fd := int(ev.Fd)
			switch {
			case fd == l.lnfd && !l.stop:
				l.accept()
			case fd < len(l.table) && l.table[fd] != nil:
				l.table[fd].event(ev.Events)
			}
		}
		if len(l.again) > 0 {
			l.runAgain()
		}
		if l.now.Sub(l.lastScan) >= evTick {
			l.lastScan = l.now
			l.scan()
		}
		// A stopping loop ends when its last client and its last tunnel
		// are gone: the proxy closes the tunnels gradually meanwhile.
		if l.stop && len(l.clients) == 0 && l.tunnelCount.Load() == 0 {
			l.force()
		}
	}
}

// wait returns the next events, waiting until until at most (zero: no
// limit).
//
// It goes through the runtime's netpoller, like any goroutine waiting for
// a socket: the raw read of the epoll descriptor (a non-blocking
// epoll_wait) takes the events that are waiting, and when there are none,
// the goroutine parks until the descriptor becomes readable. Under load
// events are usually waiting and the loop never parks. That first poll is
// the only one before parking: the netpoller forgets the descriptor's
// readiness when the read starts, so the poll must come after that, and a
// poll of its own before it would find nothing a second time whenever the
// loop is about to park, as it is at every event under a light load
// (measured on the Rocket.Chat-shaped mix: one in six of the loop's
// epoll_wait calls).
//
// Blocking in epoll_wait as a system call instead (measured) keeps the
// runtime's sysmon thread waking every 20 µs to take the blocked thread's
// P away: 23,000 wake-ups a second, about a tenth of a core at 40,000
// requests a second.
func (l *evLoop) wait(until time.Time) (int, error) {
	// The deadline changes once per scan, not at every wait: moving a
	// timer may wake the runtime's poller for nothing. It is set before
	// the loop marks itself parked: from then until it wakes, only post
	// moves it.
	if !until.Equal(l.until) {
		l.until = until
		l.epFile.SetReadDeadline(until)
	}
	l.mu.Lock()
	if len(l.box) > 0 {
		l.mu.Unlock()
		return epollPoll(l.epfd, l.events) // posted since the last look: run it too
	}
	l.parked = true
	l.mu.Unlock()
	l.n, l.err, l.polls = 0, nil, 0
	rerr := l.epRC.Read(l.waitFn)
	l.mu.Lock()
	l.parked = false
	if l.kicked {
		l.kicked = false
		l.until = kickDeadline // the deadline post set: set it again
	}
	l.mu.Unlock()
	if l.polls != 1 || rerr != nil {
		l.lastYield = time.Now() // it parked (or was kicked before it could)
	}
	if rerr != nil && !errors.Is(rerr, os.ErrDeadlineExceeded) {
		return 0, rerr
	}
	return l.n, l.err
}

// epollPoll is epoll_wait with a zero timeout, as a raw system call.
func epollPoll(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		if e == unix.EINTR {
			return 0, nil
		}
		return 0, e
	}
	return int(r), nil
}

func (l *evLoop) runInbox() {
	l.mu.Lock()
	box := l.box
	l.box = nil
	l.posted.Store(false)
	l.mu.Unlock()
	for _, fn := range box {
		fn()
	}
}

func (l *evLoop) setFD(fd int, x evFD) {
	for fd >= len(l.table) {
		l.table = append(l.table, make([]evFD, len(l.table)+64)...)
	}
	l.table[fd] = x
}

func (l *evLoop) register(fd int, x evFD) error {
	l.setFD(fd, x)
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(fd)}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.table[fd] = nil
		return err
	}
	return nil
}

func (l *evLoop) closeFD(fd int) {
	if fd < len(l.table) {
		l.table[fd] = nil
	}
	unix.Close(fd)
}

// accept takes the waiting connections off the shared listening socket.
func (l *evLoop) accept() {
	maxConns := int64(l.o.MaxConns)
	for range 64 {
		fd, sa, err := unix.Accept4(l.lnfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			if err == unix.EAGAIN || err == unix.EINTR {
				return
			}
			reason, wait := AcceptErrorReason(err)
			if !wait {
				l.o.AcceptError(reason, err, 0)
				continue
			}
			d := l.acceptPace.Next()
			l.o.AcceptError(reason, err, d)
			l.pauseAccept(d)
			return
		}
		l.acceptPace.Reset()
		if maxConns > 0 && l.e.OpenConns()+l.o.OtherConns() >= maxConns {
			unix.Write(fd, concurrencyRefusal)
			unix.Close(fd)
			continue
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
		// Whichever loop wakes first accepts a whole burst; the
		// connections go to the least loaded loop, so the cores share
		// the work.
		to := l.e.leastLoaded()
		to.load.Add(1)
		peer := sockaddrAddr(sa)
		if to == l {
			l.adopt(fd, peer)
		} else if !to.post(func() { to.adopt(fd, peer) }) {
			to.load.Add(-1)
			unix.Close(fd)
		}
	}
}

// pauseAccept stops this loop from accepting for d (accept.go says why):
// the listening socket stays readable while the accept fails, so it leaves
// the epoll set until then.
func (l *evLoop) pauseAccept(d time.Duration) {
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.lnfd, nil)
	time.AfterFunc(d, func() { l.post(l.resumeAccept) })
}

// resumeAccept puts the listening socket back in the epoll set, unless the
// loop stopped accepting meanwhile (drain closes the socket).
func (l *evLoop) resumeAccept() {
	if l.stop || l.dead {
		return
	}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, l.lnfd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLEXCLUSIVE, Fd: int32(l.lnfd)}); err != nil {
		reason, _ := AcceptErrorReason(err)
		d := l.acceptPace.Next()
		l.o.AcceptError(reason, err, d)
		time.AfterFunc(d, func() { l.post(l.resumeAccept) })
	}
}

// OpenConns is how many client connections the loops hold.
func (e *Engine) OpenConns() int64 {
	var n int64
	for _, l := range e.loops {
		n += l.load.Load()
	}
	return n
}

// leastLoaded returns the loop with the fewest client connections.
func (e *Engine) leastLoaded() *evLoop {
	best := e.loops[0]
	for _, l := range e.loops[1:] {
		if l.load.Load() < best.load.Load() {
			best = l
		}
	}
	return best
}

// adopt starts serving an accepted connection, already counted in load.
func (l *evLoop) adopt(fd int, peer netip.Addr) {
	if l.stop {
		l.load.Add(-1)
		unix.Close(fd)
		return
	}
	c := &evClient{l: l, fd: fd, peer: peer, idx: len(l.clients)}
	c.deadline = l.now.Add(l.o.IdleTimeout)
	if err := l.register(fd, c); err != nil {
		l.load.Add(-1)
		unix.Close(fd)
		return
	}
	l.clients = append(l.clients, c)
}

// concurrencyRefusal is what fasthttp answers past its Concurrency.
var concurrencyRefusal = func() []byte {
	const msg = "The connection cannot be served because Server.Concurrency limit exceeded"
	return []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: " +
		strconv.Itoa(len(msg)) + "\r\n\r\n" + msg)
}()

func sockaddrAddr(sa unix.Sockaddr) netip.Addr {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrFrom4(a.Addr)
	case *unix.SockaddrInet6:
		return netip.AddrFrom16(a.Addr).Unmap()
	}
	return netip.Addr{}
}

// scan fires the deadlines that passed and closes upstream connections
// idle too long.
func (l *evLoop) scan() {
	for i := 0; i < len(l.clients); {
		c := l.clients[i]
		switch {
		case !c.deadline.IsZero() && !l.now.Before(c.deadline):
			c.timeout()
		case c.eof && (c.state == stDial || c.state == stSend || c.state == stWait) &&
			l.now.Sub(c.start) >= exchange.LivenessInterval:
			c.abort() // gone, or half-closed and kept waiting: see advance
		case c.eof && c.state == stBody && c.upstreamQuiet():
			c.abandon()
		}
		if i < len(l.clients) && l.clients[i] == c {
			i++
		}
	}
	keep := l.idle[:0]
	for _, u := range l.idle {
		if l.now.Sub(u.idleSince) >= l.o.UpstreamIdleTimeout {
			u.close()
			continue
		}
		keep = append(keep, u)
	}
	clear(l.idle[len(keep):])
	l.idle = keep
}

// drain starts the shutdown of this loop.
func (l *evLoop) drain() {
	if l.stop {
		return
	}
	l.stop = true
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, l.lnfd, nil)
	l.lnfd = -1
	if int(l.e.drained.Add(1)) == len(l.e.loops) {
		l.e.lnFile.Close()
	}
	for i := 0; i < len(l.clients); {
		c := l.clients[i]
		if c.state == stIdle && c.r == c.w {
			c.close()
			continue
		}
		c.closeAfter = true
		i++
	}
}

// force closes everything and ends the loop.
func (l *evLoop) force() {
	for len(l.clients) > 0 {
		c := l.clients[len(l.clients)-1]
		if c.up != nil {
			c.up.close()
			c.up = nil
		}
		c.close()
	}
	for _, u := range l.idle {
		u.close()
	}
	l.idle = nil
	for len(l.tunnels) > 0 {
		l.tunnels[len(l.tunnels)-1].close()
	}
	l.dead = true
}

// dateLine returns "Date: <now>\r\n", made once a second.
func (l *evLoop) dateLine() []byte {
	if s := l.now.Unix(); s != l.dsec || l.date == nil {
		l.dsec = s
		l.date = append(l.date[:0], "Date: "...)
		l.date = l.now.UTC().AppendFormat(l.date, "Mon, 02 Jan 2006 15:04:05 GMT")
		l.date = append(l.date, "\r\n"...)
	}
	return l.date
}

func (l *evLoop) getBuf() []byte {
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		return b
	}
	return make([]byte, l.o.MaxHeaderBytes+evBodyMax)
}

func (l *evLoop) putBuf(b []byte) {
	if len(l.free) < 64 {
		l.free = append(l.free, b)
	}
}

// takeIdle returns a kept-alive upstream connection, or nil.
func (l *evLoop) takeIdle() *evUpstream {
	for len(l.idle) > 0 {
		u := l.idle[len(l.idle)-1]
		l.idle[len(l.idle)-1] = nil
		l.idle = l.idle[:len(l.idle)-1]
		// Readable is what epoll has reported so far; bytes that came
		// in this loop turn, their event not handled yet, show in a
		// peek (one non-blocking recv): stray bytes must not answer
		// this request, another client's.
		if idle := l.now.Sub(u.idleSince); idle < l.o.UpstreamIdleTimeout && !u.readable && !u.peerSpoke() {
			return u
		}
		u.close()
	}
	return nil
}

// clientState is where a client connection is in its current exchange.
type clientState uint8

const (
	stIdle  clientState = iota // reading a request
	stDial                     // waiting for a new upstream connection
	stSend                     // writing the request upstream
	stWait                     // waiting for the response head
	stBody                     // relaying the response body
	stRoute                    // a route's answer being made off the loop
)

type evClient struct {
	l    *evLoop
	fd   int
	peer netip.Addr
	idx  int // in l.clients

	// in[r:w] is read and not yet consumed; the current request is
	// in[r:r+reqLen] while it is in flight.
	in        []byte
	r, w      int
	reqLen    int
	bodyStart int // offset of the body in the request
	// need is the length of a request whose head was read and whose
	// body is still arriving (0 otherwise).
	need int

	state clientState
	// declined: the route declined the request in flight (it goes
	// upstream instead).
	declined bool
	readiness
	eof        bool // no more input: the client closed its side
	reset      bool // the connection broke
	closeAfter bool
	// deadline is when the current wait times out (zero: none).
	deadline time.Time
	// headerStart is when the first byte of a request head arrived.
	headerStart time.Time

	// The request in flight.
	head       []byte // its head for the upstream
	isHead     bool   // HEAD: no response body whatever the head says
	idempotent bool   // safe to send again on a fresh connection
	start      time.Time
	logLine    []byte // method, space, path: for the access log
	up         *evUpstream

	// The response being relayed.
	status int
	fr     h1.Framing
	mode   exchange.BodyMode
	left   int64
	chunk  h1.ChunkDecoder
	resp   []byte   // head for the client, then framing bytes
	out    [][]byte // to write to the client, in order
	outBuf [4][]byte
	done   bool // the response body was read to its end
	// headPending: the head is not queued yet; collect: it waits for
	// the whole (small) body.
	headPending bool
	collect     bool
	// quietSince is when the upstream last left the relay waiting for
	// more of the response (zero: it sent bytes since).
	quietSince time.Time
}

// readiness is what edge-triggered epoll reported of a socket: readable
// and writable stay set until a read or write would block.
type readiness struct {
	readable bool
	writable bool
	hup      bool // the peer closed or broke its side
}

func (r *readiness) note(ev uint32) {
	if ev&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.readable = true
	}
	if ev&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.hup = true
	}
	if ev&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		r.writable = true
	}
}

func (c *evClient) event(ev uint32) {
	c.note(ev)
	c.advance()
}

// fill reads from the client into in. compact allows moving the unread
// bytes to the front (only between requests, when nothing refers to them).
// It returns whether bytes arrived.
func (c *evClient) fill(compact bool) bool {
	if !c.readable || c.eof {
		return false
	}
	if c.in == nil {
		c.in = c.l.getBuf()
		c.r, c.w = 0, 0
	}
	if compact && c.r > 0 && (c.r == c.w || c.w == len(c.in)) {
		c.w = copy(c.in, c.in[c.r:c.w])
		c.r = 0
	}
	if c.w == len(c.in) {
		return false
	}
	n, err := rawRead(c.fd, c.in[c.w:])
	switch {
	case n > 0:
		// A short read emptied the socket: with edge-triggered epoll
		// the next byte brings a new event, so there is no need to
		// read again to learn that (unless an end is pending).
		if c.w+n < len(c.in) && !c.hup {
			c.readable = false
		}
		c.w += n
		return true
	case err == unix.EAGAIN:
		c.readable = false
	case err == unix.EINTR:
		return true
	case err != nil:
		c.eof, c.reset = true, true
	default: // the end of the client's input
		c.eof = true
	}
	return false
}

// advance drives the connection until it waits for the network.
func (c *evClient) advance() {
	for c.fd >= 0 {
		var progress bool
		switch c.state {
		case stIdle:
			progress = c.readRequest()
		case stDial, stSend, stWait:
			// The client may only have sent more (pipelining), half
			// closed (it still gets its answers), or gone: a reset
			// ends the exchange at once, an end of input only after
			// the upstream kept it waiting exchange.LivenessInterval, as on
			// the fasthttp path (see scan).
			c.fill(false)
			if c.reset || (c.eof && c.l.now.Sub(c.start) >= exchange.LivenessInterval) {
				c.abort()
				return
			}
			if c.state == stSend {
				progress = c.up.send()
			} else if c.state == stWait {
				progress = c.awaitHead()
			}
		case stBody:
			// A client that leaves a streamed response while the
			// upstream is silent frees the upstream connection
			// now, not at the next write to the client: at once
			// on a reset, after exchange.LivenessInterval of upstream
			// silence on an end of input, as on the fasthttp path
			// (and in scan).
			if c.readable && !c.eof {
				c.fill(false)
			}
			if c.reset || (c.eof && c.upstreamQuiet()) {
				c.abandon()
				return
			}
			progress = c.relay()
		}
		if !progress {
			return
		}
	}
}

// readRequest parses the next request and starts it upstream; false when
// it needs more bytes.
func (c *evClient) readRequest() bool {
	l := c.l
	c.declined = false
	if c.r == c.w {
		if !c.fill(true) {
			if c.eof || l.stop {
				c.close()
				return false
			}
			if c.r == c.w && c.in != nil {
				l.putBuf(c.in)
				c.in = nil
				c.r, c.w = 0, 0
			}
			c.headerStart = time.Time{}
			c.deadline = l.now.Add(l.o.IdleTimeout)
			return false
		}
	}
	if c.w-c.r < c.need {
		// The head was read; its body is still coming. It is parsed
		// again (into the loop's shared header) once all is here.
		return c.awaitBody()
	}
	buf := c.in[c.r:c.w]
	end := h1.HeadEnd(buf)
	if end == 0 {
		if c.headerStart.IsZero() {
			c.headerStart = l.now
			if t := l.o.ReadHeaderTimeout; t > 0 {
				c.deadline = l.now.Add(t)
			} else {
				c.deadline = time.Time{}
			}
		}
		if len(buf) >= l.o.MaxHeaderBytes {
			c.handoff("unparsed") // fasthttp answers 431
			return false
		}
		if c.fill(true) {
			return true
		}
		if c.eof || bytes.IndexByte(buf, '\n') >= 0 {
			// A head arriving in pieces, or cut short: fasthttp reads
			// it from here, so a malformed or truncated one gets the
			// answer it gets there (a first line fasthttp rejects is
			// answered at once, not after proxy.read_header_timeout).
			c.handoff("partial")
			return false
		}
		return false
	}

	l.src.Reset(buf)
	l.br.Reset(&l.src)
	if err := l.hdr.Read(l.br); err != nil {
		c.handoff("unparsed") // fasthttp answers 400 or 431
		return false
	}
	h := &l.hdr
	consumed := len(buf) - l.src.Len() - l.br.Buffered()
	routed := l.o.Routed(h.Method(), h.RequestURI())
	switch {
	case !h.IsHTTP11():
		c.handoff("http10")
		return false
	case h.IsConnect():
		c.handoff("connect") // fasthttp refuses it
		return false
	case h1.IsWebSocketUpgrade(h):
		c.handoff("websocket")
		return false
	case routed && l.o.Route == nil:
		c.handoff("route")
		return false
	case l.uri.Parse(h.Host(), h.RequestURI()) != nil:
		// fasthttp's server checks the Host and target this way and
		// answers 400 (RFC 9112 §3.2); let it.
		c.handoff("unparsed")
		return false
	}
	head, rh, err := h1.AppendRequestHead(c.head[:0], h, l.o.HeadOptions(c.peer))
	c.head = head
	if routed && (err != nil || rh.HasBody() || rh.ExpectContinue) {
		// The fasthttp path reads a route's body (or answers its
		// Expect) before the route runs; the loop serves bodiless
		// ones only.
		c.handoff("route")
		return false
	}
	if err != nil {
		c.handoff("unparsed") // refused there with 400
		return false
	}
	if rh.Chunked {
		c.handoff("chunked_body") // streamed there
		return false
	}
	if rh.ExpectContinue {
		c.handoff("expect_continue") // fasthttp answers 100 Continue
		return false
	}
	need := consumed
	if rh.ContentLength > 0 {
		need += int(min(rh.ContentLength, int64(len(c.in))+1))
	}
	if need > len(c.in) {
		c.handoff("large_body")
		return false
	}
	if need > len(buf) {
		c.need = need
		return c.awaitBody()
	}

	// A whole request: method and flags, then an upstream connection.
	c.need = 0
	c.reqLen, c.bodyStart = need, consumed
	c.isHead = string(h.Method()) == fasthttp.MethodHead
	c.idempotent = exchange.IdempotentRequest(h.Method(), rh.HasBody())
	c.closeAfter = c.closeAfter || h.ConnectionClose()
	c.start = l.now
	c.headerStart = time.Time{}
	if l.o.Access != nil {
		c.logLine = append(c.logLine[:0], h.Method()...)
		c.logLine = append(c.logLine, ' ')
		uri := h.RequestURI()
		if i := bytes.IndexByte(uri, '?'); i >= 0 {
			uri = uri[:i]
		}
		c.logLine = append(c.logLine, uri...)
	}
	if routed {
		c.serveRoute(h)
		return false
	}
	return c.forward()
}

// forward takes an upstream connection for the whole request parsed; false
// when it waits for a dial or handed the connection over.
func (c *evClient) forward() bool {
	l := c.l
	if u := l.takeIdle(); u != nil {
		c.startSend(u)
		return true
	}
	if !l.o.Pool.Reserve() {
		c.handoff("pool_full") // the fasthttp path waits for a free connection
		return false
	}
	c.state = stDial
	c.deadline = time.Time{}
	l.dial(c)
	return false
}

// serveRoute runs the route for the request parsed (h) off the loop. The
// connection is not read meanwhile: requests pipelined behind wait in the
// socket and in c.in, and are served after the route's answer.
func (c *evClient) serveRoute(h *fasthttp.RequestHeader) {
	l := c.l
	run := l.o.Route(h, c.peer)
	c.state = stRoute
	c.deadline = time.Time{} // the route bounds its own waits
	dst, closeConn := c.resp[:0], c.closeAfter || l.stop
	c.resp = nil
	go func() {
		a := run(dst, closeConn)
		// When the loop has ended, the connection closed with it.
		l.post(func() { c.routed(a) })
	}()
}

// routed writes a route's answer, or forwards the request the route
// declined.
func (c *evClient) routed(a RouteAnswer) {
	if c.fd < 0 || c.state != stRoute {
		return // closed meanwhile
	}
	c.resp = a.Resp
	if a.Forward {
		// Handed over from here (pool_full, retry), the request must
		// not meet the route a second time.
		c.declined = true
		if c.forward() {
			c.advance()
		}
		return
	}
	c.closeAfter = c.closeAfter || a.Close
	c.out = append(c.outBuf[:0], c.resp)
	c.mode, c.done = exchange.BodyNone, true
	c.headPending, c.collect = false, false
	c.fr = h1.Framing{Length: -1}
	c.state = stBody
	c.advance()
}

// awaitBody reads more of a request body (c.need bytes in all, with the
// head); false when it has to wait.
func (c *evClient) awaitBody() bool {
	if c.fill(true) {
		return true
	}
	if c.eof {
		c.handoff("partial") // fasthttp answers a cut body 400
		return false
	}
	if t := c.l.o.ClientBodyTimeout; t > 0 {
		c.deadline = c.l.now.Add(t)
	}
	return false
}

// startSend attaches u and queues the request for it.
func (c *evClient) startSend(u *evUpstream) {
	c.up = u
	u.owner = c
	u.out = u.outBuf[:0]
	u.out = append(u.out, c.head)
	if c.bodyStart < c.reqLen {
		u.out = append(u.out, c.in[c.r+c.bodyStart:c.r+c.reqLen])
	}
	u.sent, u.gotAny = 0, false
	c.state = stSend
	c.deadline = c.l.now.Add(c.l.o.ResponseHeaderTimeout)
}

// dial connects a new upstream connection for c off the loop.
func (l *evLoop) dial(c *evClient) {
	deadline := l.now.Add(l.o.ResponseHeaderTimeout)
	o := l.o
	go func() {
		fd, err := dialFD(o.Dial, deadline)
		if !l.post(func() { l.dialed(c, fd, err) }) {
			if fd >= 0 {
				unix.Close(fd)
			}
			o.Pool.Release()
		}
	}()
}

// dialFD dials the upstream with Go's resolver and dialer and returns a
// duplicate of the socket for the loop, the Go connection closed.
func dialFD(dial func(context.Context) (net.Conn, error), deadline time.Time) (int, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	conn, err := dial(ctx)
	if err != nil {
		return -1, err
	}
	defer conn.Close()
	return dupConn(conn.(*net.TCPConn))
}

func (l *evLoop) dialed(c *evClient, fd int, err error) {
	if err == nil && l.dead {
		unix.Close(fd)
		err = exchange.ErrPoolClosed
	}
	if err == nil {
		u := &evUpstream{l: l, fd: fd, in: make([]byte, evUpstreamBuffer)}
		if err = l.register(fd, u); err != nil {
			unix.Close(fd)
		} else if c.fd < 0 || c.state != stDial {
			// The client went away meanwhile: keep the connection.
			u.readable, u.writable = false, true
			u.idleSince = l.now
			l.idle = append(l.idle, u)
			return
		} else {
			c.startSend(u)
			c.advance()
			return
		}
	}
	l.o.Pool.Release()
	if c.fd < 0 || c.state != stDial {
		return
	}
	c.fail(exchange.ClassifyConnect(err))
	c.advance()
}

// awaitHead reads the response head; false when it needs more bytes.
func (c *evClient) awaitHead() bool {
	u := c.up
	for {
		buf := u.in[u.r:u.w]
		if end := h1.HeadEnd(buf); end > 0 {
			return c.startResponse(buf[:end])
		}
		if u.w-u.r >= h1.MaxResponseHeadBytes {
			c.fail(exchange.Failure(exchange.FailProtocol, h1.ErrHeadTooLarge))
			return true
		}
		switch u.fill() {
		case fillData:
			continue
		case fillBlocked:
			return false
		}
		// The upstream closed or broke the connection.
		if u.w == u.r && !u.gotAny {
			if (exchange.Attempt{Reused: u.reused, SentAll: true, Idempotent: c.idempotent}).RetrySafe() {
				// It was closed while idle; the fasthttp path
				// repeats the request on a fresh connection.
				c.dropUpstream()
				c.handoff("retry")
				return false
			}
			c.fail(exchange.Failure(exchange.FailReset, exchange.ErrNoResponse))
			return true
		}
		c.fail(exchange.Failure(exchange.FailProtocol, h1.ErrBadResponse))
		return true
	}
}

// startResponse turns the upstream's head into the client's and starts
// relaying the body.
func (c *evClient) startResponse(block []byte) bool {
	u := c.up
	out, code, fr, err := h1.FilterResponseHead(c.resp[:0], block)
	c.resp = out
	if err != nil {
		c.fail(exchange.Classify(err))
		return true
	}
	u.r += len(block)
	if skip, err := exchange.InterimResponse(code); skip || err != nil {
		if err != nil {
			c.fail(exchange.Classify(err))
		}
		return true
	}
	c.status, c.fr = code, fr
	c.mode = exchange.ResponseBodyMode(code, c.isHead, fr)
	switch c.mode {
	case exchange.BodyChunked:
		c.chunk = h1.ChunkDecoder{}
	case exchange.BodyFixed:
		c.left = fr.Length
	}
	// The head ends with its empty line; add what the client needs.
	c.resp = c.resp[:len(c.resp)-2]
	if exchange.ChunkedForClient(c.mode) {
		c.resp = append(c.resp, "Transfer-Encoding: chunked\r\n"...)
	}
	if c.closeAfter || c.l.stop {
		c.closeAfter = true
		c.resp = append(c.resp, "Connection: close\r\n"...)
	}
	c.resp = append(c.resp, '\r', '\n')
	c.done = c.mode == exchange.BodyNone || (c.mode == exchange.BodyFixed && c.left == 0)
	c.collect = exchange.BufferWhole(c.mode, c.left)
	c.headPending = true
	c.quietSince = time.Time{}
	c.state = stBody
	c.deadline = time.Time{}
	return true
}

// observe records the request in the metrics and the access log, when its
// response head is ready, as the fasthttp path does.
func (c *evClient) observe() {
	l := c.l
	elapsed := l.now.Sub(c.start)
	l.o.Metrics.Answered(c.status, elapsed)
	if l.o.Access != nil {
		method, path, _ := bytes.Cut(c.logLine, []byte{' '})
		l.o.Access(method, path, c.status, elapsed, c.peer.String())
	}
}

// relay moves response bytes to the client; false when it waits.
func (c *evClient) relay() bool {
	u := c.up
	if c.headPending {
		if c.collect && int64(u.w-u.r) < c.left {
			switch u.fill() {
			case fillData:
				c.quietSince = time.Time{}
			case fillBlocked:
				c.waitUpstream()
				return false
			default:
				c.fail(exchange.Failure(exchange.FailReset, exchange.ErrNoResponse))
			}
			return true
		}
		c.headPending = false
		c.out = append(c.outBuf[:0], c.resp)
		if c.mode == exchange.BodyFixed && u.r < u.w {
			n := int(min(int64(u.w-u.r), c.left))
			c.out = append(c.out, u.in[u.r:u.r+n])
			u.r += n
			c.left -= int64(n)
			c.done = c.left == 0
		}
		c.observe()
	}
	if len(c.out) > 0 {
		if !c.flush() {
			return false
		}
		if u == nil || u.fd < 0 {
			return c.fd >= 0
		}
	}
	if c.done {
		c.finish()
		return true
	}
	// Frame what the upstream has sent so far.
	if u.r < u.w {
		c.frame()
		return true
	}
	switch u.fill() {
	case fillData:
		c.quietSince = time.Time{}
		return true
	case fillBlocked:
		c.waitUpstream()
		return false
	}
	// The upstream closed.
	if c.mode == exchange.BodyUntilClose && u.r == u.w {
		c.out = append(c.out[:0], lastChunk)
		c.done = true
		c.fr.Close = true
		return true
	}
	// A body cut short: the client must not take it for whole.
	c.broke(exchange.Failure(exchange.FailReset, io.ErrUnexpectedEOF))
	return false
}

// waitUpstream arms the wait for more of the response.
func (c *evClient) waitUpstream() {
	c.deadline = c.l.now.Add(c.l.o.ResponseHeaderTimeout)
	if c.quietSince.IsZero() {
		c.quietSince = c.l.now
	}
}

// upstreamQuiet reports whether the relay has waited exchange.LivenessInterval for
// the upstream, with everything it sent already written to the client.
func (c *evClient) upstreamQuiet() bool {
	return !c.quietSince.IsZero() && len(c.out) == 0 && c.l.now.Sub(c.quietSince) >= exchange.LivenessInterval
}

// abandon ends a response whose client went away: the upstream connection
// is closed with the client's.
func (c *evClient) abandon() {
	if c.headPending {
		c.abort() // nothing of the response went out yet
		return
	}
	c.l.o.Log.Debug("client gone while the response streamed")
	c.dropUpstream()
	c.close()
}

// frame queues the buffered upstream bytes for the client, in the
// client's framing.
func (c *evClient) frame() {
	u := c.up
	buf := u.in[u.r:u.w]
	c.out = c.out[:0]
	switch c.mode {
	case exchange.BodyFixed:
		n := int(min(int64(len(buf)), c.left))
		c.out = append(c.out, buf[:n])
		u.r += n
		c.left -= int64(n)
		c.done = c.left == 0
	case exchange.BodyUntilClose:
		c.resp = h1.AppendChunkSize(c.resp[:0], len(buf))
		c.out = append(c.out, c.resp, buf, crlf)
		u.r = u.w
	case exchange.BodyChunked:
		n, err := c.chunk.Frame(buf)
		u.r += n
		rest := buf[n:]
		data := rest[:int(min(int64(len(rest)), c.chunk.DataLeft()))]
		switch {
		case err != nil:
			c.broke(exchange.Classify(err))
			return
		case len(data) > 0:
			c.chunk.Took(len(data))
			u.r += len(data)
			c.resp = h1.AppendChunkSize(c.resp[:0], len(data))
			c.out = append(c.out, c.resp, data, crlf)
		case c.chunk.Finished():
			c.out = append(c.out, lastChunk)
			c.done = true
		}
	}
}

// flush writes out to the client; false when the socket is full (or the
// client is gone, and closed).
func (c *evClient) flush() bool {
	for len(c.out) > 0 {
		if !c.writable {
			if t := c.l.o.WriteTimeout; t > 0 {
				c.deadline = c.l.now.Add(t)
			}
			return false
		}
		n, err := c.l.writev(c.fd, c.out)
		if err == unix.EAGAIN {
			c.writable = false
			continue
		}
		if err != nil && err != unix.EINTR {
			c.l.o.Log.Debug("client write", zap.Error(err))
			c.dropUpstream()
			c.close()
			return false
		}
		c.out = consume(c.out, n)
	}
	c.out = nil
	return true
}

// finish ends the exchange: the upstream connection back to the pool or
// closed, the request consumed, the next one read.
func (c *evClient) finish() {
	l := c.l
	if u := c.up; u != nil {
		c.up = nil
		u.owner = nil
		pending := u.r != u.w || u.eof || u.hup || u.readable
		if exchange.Reusable(c.fr, c.mode, c.done, pending) && !l.stop && !l.o.Pool.Wanted() {
			u.reused = true
			u.r, u.w = 0, 0
			u.idleSince = l.now
			l.idle = append(l.idle, u)
		} else {
			u.close()
		}
	}
	c.r += c.reqLen
	c.reqLen = 0
	c.state = stIdle
	c.deadline = l.now.Add(l.o.IdleTimeout)
	if c.closeAfter {
		c.close()
	}
}

// answerError answers the request in flight with one of sessiongate's own
// error bodies (writeError's bytes) and keeps the connection.
func (c *evClient) answerError(status int, body []byte) {
	c.status = status
	c.resp = exchange.AppendOwnAnswer(c.resp[:0], c.l.dateLine(), status, body, c.closeAfter || c.l.stop)
	c.out = append(c.outBuf[:0], c.resp)
	c.mode, c.done = exchange.BodyNone, true
	c.headPending, c.collect = false, false
	c.fr = h1.Framing{Length: -1}
	c.state = stBody
	c.deadline = time.Time{}
	c.observe()
}

// fail answers for an upstream failure before any of the response went
// out (the answer, metric and log line of its kind); the upstream
// connection is closed.
func (c *evClient) fail(e *exchange.Error) {
	c.l.o.Metrics.UpstreamFailed(e.Kind)
	c.l.o.Log.Debug("upstream failed", zap.Error(e))
	c.dropUpstream()
	status, body := e.Kind.Answer()
	c.answerError(status, body)
}

// broke ends a response already under way whose upstream failed: the
// failure is counted and both connections closed, so the client cannot
// take the body for whole.
func (c *evClient) broke(e *exchange.Error) {
	c.l.o.Metrics.UpstreamFailed(e.Kind)
	c.l.o.Log.Debug("upstream body", zap.Error(e))
	c.dropUpstream()
	c.close()
}

// timeout fires c's deadline.
func (c *evClient) timeout() {
	l := c.l
	switch c.state {
	case stIdle:
		if !c.headerStart.IsZero() && c.reqLen == 0 && h1.HeadEnd(c.in[c.r:c.w]) == 0 {
			// A head that did not arrive in time: 408 and close,
			// like the fasthttp path's parseError.
			l.o.Metrics.Answered(fasthttp.StatusRequestTimeout, 0)
			c.closeAfter = true
			c.resp = append(append(append(c.resp[:0], "HTTP/1.1 408 Request Timeout\r\n"...), l.dateLine()...),
				"Content-Length: 0\r\nConnection: close\r\n\r\n"...)
			c.out = append(c.outBuf[:0], c.resp)
			c.mode, c.done, c.state = exchange.BodyNone, true, stBody
			c.deadline = l.now.Add(time.Second)
			c.advance()
			return
		}
		c.close() // idle too long, or a body that stopped coming
	case stSend, stWait, stBody:
		if c.state == stBody && !c.headPending {
			// An upstream silent mid-body, or a client that stopped
			// reading: the response is under way, so cut it. Only
			// the first is the upstream's failure.
			if len(c.out) == 0 {
				c.broke(exchange.Failure(exchange.FailTimeout, os.ErrDeadlineExceeded))
				return
			}
			c.dropUpstream()
			c.close()
			return
		}
		c.fail(exchange.Failure(exchange.FailTimeout, os.ErrDeadlineExceeded))
		c.advance()
	}
}

// abort ends an exchange whose client went away before the response.
func (c *evClient) abort() {
	c.l.o.Log.Debug("client gone while waiting for upstream")
	c.l.o.Metrics.Answered(fasthttp.StatusBadRequest, c.l.now.Sub(c.start))
	c.dropUpstream()
	c.close()
}

// dropUpstream closes the upstream connection in use, if any.
func (c *evClient) dropUpstream() {
	if u := c.up; u != nil {
		c.up = nil
		u.owner = nil
		u.close()
	}
}

// close closes the client connection.
func (c *evClient) close() {
	if c.fd < 0 {
		return
	}
	l := c.l
	l.closeFD(c.fd)
	c.fd = -1
	c.detach()
}

// detach removes c from the loop's books.
func (c *evClient) detach() {
	l := c.l
	if c.state == stDial {
		c.state = stIdle // dialed() keeps the connection for later
	}
	last := l.clients[len(l.clients)-1]
	l.clients[c.idx] = last
	last.idx = c.idx
	l.clients[len(l.clients)-1] = nil
	l.clients = l.clients[:len(l.clients)-1]
	if c.in != nil {
		l.putBuf(c.in)
		c.in = nil
	}
	c.out = nil
	l.load.Add(-1)
}

// handoff gives the connection to the fasthttp server, with the bytes read
// and not consumed in front.
func (c *evClient) handoff(reason string) {
	l := c.l
	l.o.Metrics.HandedOff(reason)
	fd := c.fd
	unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, fd, nil)
	l.table[fd] = nil
	var prefix []byte
	if c.r < c.w {
		prefix = append([]byte(nil), c.in[c.r:c.w]...)
	}
	c.fd = -1
	c.detach()
	nc, err := l.e.reserve.fileConn(fd)
	if err != nil {
		l.o.Log.Debug("handoff", zap.Error(err))
		return
	}
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		nc.Close()
		return
	}
	if prefix == nil { // never with declined: the request is in front
		l.o.Handoff(tc)
		return
	}
	l.o.Handoff(&PrefixConn{TCPConn: tc, prefix: prefix, routeDeclined: c.declined})
}

// evUpstream is an upstream connection owned by a loop.
type evUpstream struct {
	l      *evLoop
	fd     int
	in     []byte
	r, w   int
	owner  *evClient
	reused bool
	gotAny bool
	eof    bool
	readiness
	// idleSince is when it went idle.
	idleSince time.Time
	// out is the request being written; sent counts its bytes written.
	out    [][]byte
	outBuf [2][]byte
	sent   int
}

func (u *evUpstream) event(ev uint32) {
	u.note(ev)
	if u.owner != nil {
		u.owner.advance()
		return
	}
	if u.readable {
		// An idle connection that speaks or closes is done for.
		u.l.removeIdle(u)
		u.close()
	}
}

// shed closes the idle upstream connections, for the fasthttp path's
// requests waiting for a free one (upstream.max_conns is shared).
func (l *evLoop) shed() {
	for _, u := range l.idle {
		u.close()
	}
	clear(l.idle)
	l.idle = l.idle[:0]
}

func (l *evLoop) removeIdle(u *evUpstream) {
	for i, x := range l.idle {
		if x == u {
			l.idle = append(l.idle[:i], l.idle[i+1:]...)
			return
		}
	}
}

type fillResult uint8

const (
	fillData    fillResult = iota // bytes arrived
	fillBlocked                   // none yet
	fillEnd                       // closed or broken
)

// fill reads from the upstream into in, after the unread bytes.
func (u *evUpstream) fill() fillResult {
	if u.eof {
		return fillEnd
	}
	if !u.readable {
		return fillBlocked
	}
	if u.r == u.w {
		u.r, u.w = 0, 0
	} else if u.w == len(u.in) {
		u.w = copy(u.in, u.in[u.r:u.w])
		u.r = 0
	}
	n, err := rawRead(u.fd, u.in[u.w:])
	switch {
	case n > 0:
		if u.w+n < len(u.in) && !u.hup {
			u.readable = false // as in evClient.fill
		}
		u.w += n
		u.gotAny = true
		return fillData
	case err == unix.EAGAIN:
		u.readable = false
		return fillBlocked
	case err == unix.EINTR:
		return fillData
	}
	u.eof = true
	return fillEnd
}

// send writes the request; true when the exchange moved on.
func (u *evUpstream) send() bool {
	c := u.owner
	for len(u.out) > 0 {
		if !u.writable {
			return false
		}
		n, err := u.l.writev(u.fd, u.out)
		if err == unix.EAGAIN {
			u.writable = false
			continue
		}
		if err != nil && err != unix.EINTR {
			if (exchange.Attempt{Reused: u.reused, SentNone: u.sent == 0, WholeInHand: true}).RetrySafe() {
				// Closed while idle: the fasthttp path retries.
				c.dropUpstream()
				c.handoff("retry")
				return false
			}
			c.fail(exchange.Failure(exchange.FailReset, err))
			return true
		}
		u.sent += n
		u.out = consume(u.out, n)
	}
	u.out = nil
	c.state = stWait
	c.deadline = u.l.now.Add(u.l.o.ResponseHeaderTimeout)
	return true
}

// peerSpoke reports whether the idle connection has bytes waiting, or was
// closed or broken by the upstream.
func (u *evUpstream) peerSpoke() bool {
	var b [1]byte
	_, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(u.fd), uintptr(unsafe.Pointer(&b[0])), 1,
		unix.MSG_PEEK|unix.MSG_DONTWAIT, 0, 0)
	if e != 0 {
		return e != unix.EAGAIN && e != unix.EINTR
	}
	return true // a byte, or 0: the upstream's end
}

func (u *evUpstream) close() {
	if u.fd < 0 {
		return
	}
	u.l.closeFD(u.fd)
	u.fd = -1
	u.l.o.Pool.Release()
}

// The loop's sockets are non-blocking, so their reads and writes never
// block: they are made as raw system calls, without telling the scheduler
// (a Syscall's entersyscall/exitsyscall pair costs about as much as a
// small read).

func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// writev writes bufs (at most len(l.iov) of them) with one system call and
// returns the bytes written.
func (l *evLoop) writev(fd int, bufs [][]byte) (int, error) {
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if n == len(l.iov) {
			break
		}
		l.iov[n].Base = &b[0]
		l.iov[n].SetLen(len(b))
		n++
	}
	if n == 0 {
		return 0, nil
	}
	r, _, e := unix.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&l.iov[0])), uintptr(n))
	clear(l.iov[:n])
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// consume drops the first n bytes of bufs.
func consume(bufs [][]byte, n int) [][]byte {
	for n > 0 && len(bufs) > 0 {
		if n < len(bufs[0]) {
			bufs[0] = bufs[0][n:]
			return bufs
		}
		n -= len(bufs[0])
		bufs = bufs[1:]
	}
	for len(bufs) > 0 && len(bufs[0]) == 0 {
		bufs = bufs[1:]
	}
	return bufs
}
