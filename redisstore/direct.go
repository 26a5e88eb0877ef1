package redisstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/sessions"
)

var _ sessions.Store = (*direct)(nil)

// direct answers the route's lookups on a standalone server or a Sentinel
// master over connections of its own, speaking RESP2 from reused buffers:
// one write and one read per lookup, and no allocation but the session
// document of a hit. go-redis spends about fifteen allocations on the same
// MGET (command and arguments, reply parsing, the pool's health check);
// the route's budget is four (docs/performance.md).
//
// Connections come from the go-redis client's own dialer, so they reach
// what the client reaches: the URL's address with its TLS settings, or on
// Sentinel the current master, which the failover dialer asks the
// sentinels for on every dial. After dialing, AUTH and SELECT as the client
// would. A connection is closed on any error (refused, reset, timeout, an
// error reply, a reply it cannot parse), so one that may hold part of a
// reply is never reused; the next lookup dials again and, on Sentinel,
// resolves the master again. Sentinel disconnects the clients of a master
// it demotes (CLIENT KILL TYPE normal, sentinel.c sentinelSendSlaveOf), so
// a failover reaches the idle connections too: the liveness check on reuse
// (see respConn.ready) sees them closed.
//
// Deadlines: the lookup's deadline is ctx.Deadline() (ctx.Done() is not
// watched), applied to the connection as its I/O deadline; a dial gets the
// earlier of that deadline and the dial timeout. When every connection is
// busy, a lookup waits for one until its deadline. So a lookup on an open
// connection never takes longer than its deadline plus scheduling, whatever
// Redis does. The one exception is dialing with TLS: go-redis's dialer uses
// tls.DialWithDialer, which takes no context, so connect and handshake are
// bounded by the dial timeout alone (as they were through go-redis).
//
// direct is safe for concurrent use.
type direct struct {
	keys    Keys
	dialer  func(ctx context.Context, network, addr string) (net.Conn, error)
	network string
	addr    string
	user    string
	pass    string
	db      int
	// dialTimeout bounds dialing (with AUTH/SELECT) within a lookup's
	// deadline; timeout is the deadline of a lookup whose ctx has none.
	dialTimeout, timeout time.Duration

	// idle holds connections ready for use; slots holds one token per open
	// connection, so len(slots) <= cap(slots) = the pool size bounds both.
	idle   chan *respConn
	slots  chan struct{}
	closed atomic.Bool
}

// newDirect builds a direct store reaching what c reaches. It does not
// connect.
func newDirect(c *redis.Client, keys Keys) *direct {
	opt := c.Options()
	size := max(opt.PoolSize, 1)
	d := &direct{
		keys:        keys,
		dialer:      opt.Dialer,
		network:     opt.Network,
		addr:        opt.Addr,
		user:        opt.Username,
		pass:        opt.Password,
		db:          opt.DB,
		dialTimeout: opt.DialTimeout,
		timeout:     opt.ReadTimeout,
		idle:        make(chan *respConn, size),
		slots:       make(chan struct{}, size),
	}
	if d.network == "" {
		d.network = "tcp"
	}
	if d.dialTimeout <= 0 {
		d.dialTimeout = 5 * time.Second // go-redis's default
	}
	if d.timeout <= 0 {
		d.timeout = 3 * time.Second // go-redis's default
	}
	return d
}

var errClosed = errors.New("redisstore: store closed")

// Session fetches the token key and the session key with one MGET.
func (d *direct) Session(ctx context.Context, userID, hashedToken, sessionID []byte) (string, error) {
	c, err := d.get(ctx)
	if err != nil {
		return "", fmt.Errorf("redisstore: mget: %w", err)
	}
	b := append(c.wbuf[:0], "*3\r\n$4\r\nMGET\r\n"...)
	c.kbuf = d.keys.AppendTokenKey(c.kbuf[:0], userID, hashedToken)
	b = appendBulk(b, c.kbuf)
	c.kbuf = d.keys.AppendSessionKey(c.kbuf[:0], userID, sessionID)
	b = appendBulk(b, c.kbuf)
	c.wbuf = b
	doc, tokenFound, marked, docFound, err := c.mget(b)
	if err != nil {
		d.discard(c)
		return "", fmt.Errorf("redisstore: mget: %w", err)
	}
	d.put(c)
	return lookupResult(doc, tokenFound, marked, docFound)
}

// Authenticate checks the token key holds a string with an MGET of that
// key alone (Store.Authenticate says why not EXISTS).
func (d *direct) Authenticate(ctx context.Context, userID, hashedToken []byte) error {
	c, err := d.get(ctx)
	if err != nil {
		return fmt.Errorf("redisstore: mget: %w", err)
	}
	b := append(c.wbuf[:0], "*2\r\n$4\r\nMGET\r\n"...)
	c.kbuf = d.keys.AppendTokenKey(c.kbuf[:0], userID, hashedToken)
	b = appendBulk(b, c.kbuf)
	c.wbuf = b
	found, marked, err := c.mgetOne(b)
	if err != nil {
		d.discard(c)
		return fmt.Errorf("redisstore: mget: %w", err)
	}
	d.put(c)
	switch {
	case !found:
		return auth.ErrInvalidToken
	case marked:
		return sessions.ErrUnverified
	}
	return nil
}

// Close closes the idle connections; connections in use are closed when
// their lookups end. Lookups after Close fail.
func (d *direct) Close() error {
	d.closed.Store(true)
	d.drain()
	return nil
}

func (d *direct) drain() {
	for {
		select {
		case c := <-d.idle:
			d.discard(c)
		default:
			return
		}
	}
}

// get returns a live connection with its I/O deadline set: an idle one,
// else a new one while the pool has room, else the first one freed before
// the deadline.
func (d *direct) get(ctx context.Context) (*respConn, error) {
	if d.closed.Load() {
		return nil, errClosed
	}
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(d.timeout)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !time.Now().Before(deadline) {
		// Checked here, not left to the socket: an idle connection would
		// fail its liveness check and be closed for nothing.
		return nil, context.DeadlineExceeded
	}
	select {
	case c := <-d.idle:
		return d.reuse(c, deadline)
	default:
	}
	select {
	case d.slots <- struct{}{}:
		return d.dial(deadline)
	default:
	}
	// Every connection is busy: the only path that allocates (a timer).
	wait := time.Until(deadline)
	if wait <= 0 {
		return nil, context.DeadlineExceeded
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case c := <-d.idle:
		return d.reuse(c, deadline)
	case d.slots <- struct{}{}:
		return d.dial(deadline)
	case <-t.C:
		return nil, errPoolTimeout
	}
}

var errPoolTimeout = errors.New("redisstore: no connection free before the deadline")

// reuse readies an idle connection, or replaces it, in its slot, with a new
// one when it has died (Redis restarted, closed it, or a failover).
func (d *direct) reuse(c *respConn, deadline time.Time) (*respConn, error) {
	if err := c.ready(deadline); err == nil {
		return c, nil
	}
	c.nc.Close()
	return d.dial(deadline)
}

// dial opens a connection in a slot already taken, and gives the slot back
// if it fails.
func (d *direct) dial(deadline time.Time) (*respConn, error) {
	c, err := d.connect(deadline)
	if err != nil {
		<-d.slots
		return nil, err
	}
	return c, nil
}

func (d *direct) connect(deadline time.Time) (*respConn, error) {
	// The dialer (on Sentinel: asking the sentinels, then connecting)
	// watches ctx.Done(), so it gets a real deadline context; dialing is
	// rare, its allocations do not matter.
	dialDeadline := time.Now().Add(d.dialTimeout)
	if deadline.Before(dialDeadline) {
		dialDeadline = deadline
	}
	ctx, cancel := context.WithDeadline(context.Background(), dialDeadline)
	defer cancel()
	nc, err := d.dialer(ctx, d.network, d.addr)
	if err != nil {
		return nil, err
	}
	c := newRespConn(nc)
	if err := nc.SetDeadline(deadline); err != nil {
		nc.Close()
		return nil, err
	}
	if err := c.handshake(d.user, d.pass, d.db); err != nil {
		nc.Close()
		return nil, err
	}
	return c, nil
}

// put returns a connection after a complete exchange.
func (d *direct) put(c *respConn) {
	if d.closed.Load() {
		d.discard(c)
		return
	}
	select {
	case d.idle <- c:
	default: // cannot happen: there are no more connections than room
		d.discard(c)
	}
	if d.closed.Load() { // Close ran between the check and the send
		d.drain()
	}
}

// discard closes a connection and frees its slot.
func (d *direct) discard(c *respConn) {
	c.nc.Close()
	<-d.slots
}

// respConn is one connection to Redis with its buffers. It is used by one
// lookup at a time.
type respConn struct {
	nc   net.Conn
	rd   *bufio.Reader
	wbuf []byte // the command being written
	kbuf []byte // a key being built

	// raw and peek implement the liveness check on reuse, bound once so
	// that the check allocates nothing; raw is nil where the check cannot
	// be done (TLS: the outer connection's bytes are records, not replies).
	raw     syscall.RawConn
	peek    func(fd uintptr) bool
	peekErr error
}

func newRespConn(nc net.Conn) *respConn {
	c := &respConn{
		nc:   nc,
		rd:   bufio.NewReaderSize(nc, 4096),
		wbuf: make([]byte, 0, 512),
		kbuf: make([]byte, 0, 256),
	}
	c.bindPeek(nc)
	return c
}

// ready sets the connection's deadline and checks that it is still usable:
// nothing left unread, and the peer has not closed it. The check is the one
// go-redis makes before reusing a connection (internal/pool connCheck): a
// non-blocking MSG_PEEK read that sees EOF once Redis has closed the
// connection, say after a restart, so the lookup dials instead of failing.
func (c *respConn) ready(deadline time.Time) error {
	if c.rd.Buffered() > 0 {
		return errProtocol
	}
	if err := c.nc.SetDeadline(deadline); err != nil {
		return err
	}
	if c.raw == nil {
		return nil
	}
	if err := c.raw.Read(c.peek); err != nil {
		return err
	}
	return c.peekErr
}

var errUnexpectedData = errors.New("redisstore: data before a command")

// mget sends an MGET of a token key and a session key and reads its reply.
// Of the token's value only its start is read: whether it is marked.
func (c *respConn) mget(cmd []byte) (doc string, tokenFound, marked, docFound bool, err error) {
	if _, err := c.nc.Write(cmd); err != nil {
		return "", false, false, false, err
	}
	n, err := readArrayLen(c.rd)
	if err != nil {
		return "", false, false, false, err
	}
	if n != 2 {
		return "", false, false, false, errShortReply
	}
	if tokenFound, marked, err = readBulkMarked(c.rd); err != nil {
		return "", false, false, false, err
	}
	// The session value is read in full either way, to keep the
	// connection in step; it is kept only with a valid token.
	if doc, docFound, err = readBulk(c.rd, tokenFound); err != nil {
		return "", false, false, false, err
	}
	return doc, tokenFound, marked, docFound, nil
}

// mgetOne sends an MGET of one key and reports whether it holds a string,
// and whether that is marked; the rest of the value is skipped.
func (c *respConn) mgetOne(cmd []byte) (found, marked bool, err error) {
	if _, err := c.nc.Write(cmd); err != nil {
		return false, false, err
	}
	n, err := readArrayLen(c.rd)
	if err != nil {
		return false, false, err
	}
	if n != 1 {
		return false, false, errShortReply
	}
	return readBulkMarked(c.rd)
}

// handshake authenticates and selects the database, as go-redis does on a
// new connection (one round trip, pipelined).
func (c *respConn) handshake(user, pass string, db int) error {
	b := c.wbuf[:0]
	replies := 0
	if pass != "" {
		if user != "" {
			b = append(b, "*3\r\n$4\r\nAUTH\r\n"...)
			b = appendBulkString(b, user)
		} else {
			b = append(b, "*2\r\n$4\r\nAUTH\r\n"...)
		}
		b = appendBulkString(b, pass)
		replies++
	}
	if db != 0 {
		b = append(b, "*2\r\n$6\r\nSELECT\r\n"...)
		b = appendBulkString(b, strconv.Itoa(db))
		replies++
	}
	c.wbuf = b[:0]
	if replies == 0 {
		return nil
	}
	if _, err := c.nc.Write(b); err != nil {
		return err
	}
	var first error
	for range replies {
		if err := readOK(c.rd); err != nil && first == nil {
			first = err
		}
		if first != nil && !isReplyError(first) {
			return first // the connection itself failed
		}
	}
	return first
}

func isReplyError(err error) bool {
	var re replyError
	return errors.As(err, &re)
}
