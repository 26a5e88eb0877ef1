// Package sessions answers GET /api/v1/sessions/info from the token and
// session data in a Store, with Rocket.Chat's exact statuses, bodies and
// headers (docs/route.md). It owns the Store interface it needs; redisstore
// implements it.
package sessions

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/internal/loglimit"
)

// ErrNotFound means the user has no session with that id. It is an answer
// (404), not a storage failure.
var ErrNotFound = errors.New("sessions: not found")

// ErrUnverified means the token key exists but is marked "verify before
// serving" (docs/data-contract.md): the writer vouches for it only as of its
// last read of MongoDB, so the Handler asks the Verifier before answering.
// Session returns the document alongside it; ErrUnverifiedNotFound is the
// same with no session (it matches both ErrUnverified and ErrNotFound).
var ErrUnverified = errors.New("sessions: token to be verified")

// ErrUnverifiedNotFound: a marked token key, and no session with that id.
var ErrUnverifiedNotFound = fmt.Errorf("%w: %w", ErrUnverified, ErrNotFound)

// Verifier asks the writer of the data (the mirror) whether a marked token
// is still valid: true serves it, false answers 401, an error (including no
// answer before ctx's deadline) is treated as a Store failure. Like a
// Store, it must bound its wait by ctx.Deadline() and keep no slice.
type Verifier interface {
	Verify(ctx context.Context, userID, hashedToken []byte) (bool, error)
}

// DefaultVerifyTimeout is the Verifier's deadline when
// Options.VerifyTimeout is zero.
const DefaultVerifyTimeout = time.Second

// Store is where the route's answers live (docs/data-contract.md). Each method spends one
// round trip and honours ctx's deadline. Methods must not keep ctx or the
// byte slices they are given, and must be safe for concurrent use.
//
// The Handler's ctx carries a deadline and nothing else: its Done is nil
// (see deadlineContext), so an implementation must bound its work by
// ctx.Deadline() (socket deadlines), not by waiting on ctx.Done().
//
// Errors: auth.ErrInvalidToken when hashedToken is not a valid login token
// of userID, ErrNotFound when the session does not exist, ErrUnverified
// (with the document) or ErrUnverifiedNotFound when the token key is marked
// to be verified; any other error
// means the store could not answer (refused, reset, timeout) and is never
// turned into a 401 or 404.
type Store interface {
	// Session returns the stored session document sessionID of userID,
	// provided hashedToken is a valid login token of userID; token and
	// session are fetched together in one round trip.
	Session(ctx context.Context, userID, hashedToken, sessionID []byte) (string, error)
	// Authenticate returns nil when hashedToken is a valid login token of
	// userID. The route uses it alone when the query is invalid, so that
	// an unauthenticated caller still gets 401 first.
	Authenticate(ctx context.Context, userID, hashedToken []byte) error
}

// Values of Options.OnError and Options.UnauthorizedBody (the same words
// as the redis.on_error and route.unauthorized_body settings).
const (
	OnErrorForward       = "forward"
	OnErrorUnavailable   = "unavailable"
	UnauthorizedAuto     = "auto"
	UnauthorizedClassic  = "classic"
	UnauthorizedExtended = "extended"
)

// DefaultVersion is the Rocket.Chat version whose era a Handler follows
// when Options.Version is empty: the newest of the era docs/route.md documents.
const DefaultVersion = "7.3.0"

// DefaultTimeout is the Store deadline when Options.Timeout is zero.
const DefaultTimeout = 250 * time.Millisecond

// Options configures a Handler.
type Options struct {
	// Store answers the lookups. Required.
	Store Store
	// OnError is what happens when the Store fails: OnErrorForward passes
	// the request upstream unchanged, OnErrorUnavailable answers 503.
	// Default OnErrorForward.
	OnError string
	// UnauthorizedBody picks the 401 body: UnauthorizedAuto (the era's),
	// UnauthorizedClassic (the documented one) or UnauthorizedExtended
	// (Rocket.Chat 7.4+). Default UnauthorizedAuto.
	UnauthorizedBody string
	// Version is the upstream's Rocket.Chat version, whose era decides
	// what differs between versions (see SetVersion). Default
	// DefaultVersion.
	Version string
	// Timeout bounds each Store call (redis.timeout). Default
	// DefaultTimeout.
	Timeout time.Duration
	// Fresh, when set, is asked before each Store call; false means the
	// data may be stale (the mirror is lagging) and the request is
	// forwarded upstream instead. Default nil: always fresh.
	Fresh func() bool
	// Activity, when set, is told of every token lookup (see Activity).
	// Default nil.
	Activity Activity
	// Verifier, when set, is asked about every token the Store reports
	// marked (ErrUnverified). Default nil: a marked token is served as an
	// unmarked one is, which is right only when no writer marks keys.
	Verifier Verifier
	// VerifyTimeout bounds each Verifier call (route.verify_timeout).
	// Default DefaultVerifyTimeout.
	VerifyTimeout time.Duration
	// Log receives the handler's messages (as "sessions"). Default: none.
	Log *zap.Logger
	// Registerer receives the handler's metrics. Default: none.
	Registerer prometheus.Registerer
}

// Handler serves the route. Build it with New; Serve is safe for
// concurrent use.
type Handler struct {
	store        Store
	forward      bool
	unauthorized []byte // an explicit 401 body; nil: the era's
	era          atomic.Pointer[era]
	timeout      time.Duration
	fresh        func() bool
	activity     Activity
	verifier     Verifier
	verifyWait   time.Duration
	log          *zap.Logger
	metrics      *metrics
	failures     *loglimit.Limiter // Store failures logged
	scratch      sync.Pool         // of *scratch
}

// scratch is per-request working memory, pooled so the hot path does not
// allocate.
type scratch struct {
	hash      []byte // hashed token
	sessionID []byte // decoded sessionId
	ctx       deadlineContext
}

// deadlineContext is the Store call's context: a deadline and nothing else.
// context.WithDeadline costs four allocations and a runtime timer per
// request, a fifth of the route's budget, to provide a Done
// channel that a socket-deadline client never reads: go-redis with
// ContextTimeoutEnabled and redisstore's direct connections take their I/O
// deadlines from ctx.Deadline(). Done is nil, which the context package
// defines as "never canceled", so Err is always nil (context.Context
// docs). It lives in the pooled scratch: a Store must not keep it.
type deadlineContext struct {
	deadline time.Time
}

var _ context.Context = (*deadlineContext)(nil)

func (c *deadlineContext) Deadline() (time.Time, bool) { return c.deadline, true }
func (c *deadlineContext) Done() <-chan struct{}       { return nil }
func (c *deadlineContext) Err() error                  { return nil }
func (c *deadlineContext) Value(any) any               { return nil }

// New builds a Handler from opts.
func New(opts Options) (*Handler, error) {
	h := &Handler{
		store:      opts.Store,
		timeout:    opts.Timeout,
		fresh:      opts.Fresh,
		log:        opts.Log,
		activity:   opts.Activity,
		verifier:   opts.Verifier,
		verifyWait: opts.VerifyTimeout,
		failures:   loglimit.New(failureLogEvery),
	}
	if h.verifyWait <= 0 {
		h.verifyWait = DefaultVerifyTimeout
	}
	if h.store == nil {
		return nil, errors.New("sessions: no store")
	}
	switch opts.OnError {
	case "", OnErrorForward:
		h.forward = true
	case OnErrorUnavailable:
	default:
		return nil, fmt.Errorf("sessions: on_error: %q: must be %s or %s", opts.OnError, OnErrorForward, OnErrorUnavailable)
	}
	switch opts.UnauthorizedBody {
	case "", UnauthorizedAuto:
	case UnauthorizedClassic:
		h.unauthorized = bodyUnauthorizedClassic
	case UnauthorizedExtended:
		h.unauthorized = bodyUnauthorizedExtended
	default:
		return nil, fmt.Errorf("sessions: unauthorized_body: %q: must be %s, %s or %s", opts.UnauthorizedBody, UnauthorizedAuto, UnauthorizedClassic, UnauthorizedExtended)
	}
	if opts.Version == "" {
		opts.Version = DefaultVersion
	}
	if _, err := h.SetVersion(opts.Version); err != nil {
		return nil, err
	}
	if h.timeout <= 0 {
		h.timeout = DefaultTimeout
	}
	if h.log == nil {
		h.log = zap.NewNop()
	}
	h.log = h.log.Named("sessions")
	var err error
	if h.metrics, err = newMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	h.scratch.New = func() any {
		return &scratch{hash: make([]byte, 0, auth.HashedTokenLen), sessionID: make([]byte, 0, 64)}
	}
	return h, nil
}

// Serve answers GET /api/v1/sessions/info and returns true, or returns
// false without touching the response to have the request forwarded
// upstream (Store failure with OnErrorForward, stale data, or a request
// line Node refuses before Rocket.Chat runs). It does not keep ctx or its
// byte slices.
//
// The checks run in Rocket.Chat's order (docs/route.md): authentication, then
// parameter validation, then the lookup. Authentication needs the Store, so
// the Store call comes first and carries what the query allows: token and
// session together for a valid query (one round trip), the token alone
// otherwise, so that an invalid query from an unauthenticated caller is a
// 401, not a 400, and a session id that cannot be real never reaches the
// Store. A token the Store reports marked (ErrUnverified) is settled with
// the Verifier before any answer.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) bool {
	if !nodeAccepts(ctx.Request.Header.RequestURI()) {
		// Node's HTTP parser answers 400 before Rocket.Chat runs; the
		// upstream says it in its own words.
		return false
	}
	userID, token, ok := credentials(&ctx.Request.Header)
	if !ok || !validID(userID) {
		// No header, an empty or repeated one, or a user id that cannot be
		// real: no user matches, Rocket.Chat answers 401 without a lookup.
		h.answer(ctx, outcomeUnauthorized)
		return true
	}

	s := h.scratch.Get().(*scratch)
	defer h.scratch.Put(s)
	s.hash = auth.AppendHashedToken(s.hash[:0], token)
	e := h.era.Load()
	var query queryResult
	s.sessionID, query = parseQuery(s.sessionID[:0], rawQuery(&ctx.Request.Header), e.qs)
	lookup := query == queryOK && validID(s.sessionID)

	if h.fresh != nil && !h.fresh() {
		h.metrics.count(outcomeStaleForwarded)
		return false
	}

	// A deadline of the request's own (docs/route.md), not the RequestCtx's,
	// whose Done follows the server's shutdown.
	start := time.Now()
	s.ctx.deadline = start.Add(h.timeout)
	var doc string
	var err error
	if lookup {
		doc, err = h.store.Session(&s.ctx, userID, s.hash, s.sessionID)
	} else {
		err = h.store.Authenticate(&s.ctx, userID, s.hash)
	}
	h.metrics.redisSeconds.Observe(time.Since(start).Seconds())
	if errors.Is(err, ErrUnverified) {
		err = h.verify(s, userID, err)
	}
	h.report(err, userID, s.hash)

	switch {
	case err == nil && query != queryOK:
		h.answerInvalid(ctx, e, query)
	case err == nil && !lookup:
		h.answer(ctx, outcomeNotFound) // a session id that cannot be real
	case err == nil:
		if !h.answerSession(ctx, doc) {
			h.logFailure(errNotObject)
			return h.fail(ctx)
		}
	case errors.Is(err, auth.ErrInvalidToken):
		h.answer(ctx, outcomeUnauthorized)
	case errors.Is(err, ErrNotFound):
		h.answer(ctx, outcomeNotFound)
	default:
		h.logFailure(err)
		return h.fail(ctx)
	}
	return true
}

// verify settles a marked token (err is ErrUnverified or
// ErrUnverifiedNotFound) with the Verifier, and returns what the Store
// would have returned for an unmarked key: nil or ErrNotFound when the
// token is valid, auth.ErrInvalidToken when it is not, or the Verifier's
// failure, which the caller treats as a Store failure.
func (h *Handler) verify(s *scratch, userID []byte, err error) error {
	valid := true
	if h.verifier != nil {
		start := time.Now()
		s.ctx.deadline = start.Add(h.verifyWait)
		var verr error
		valid, verr = h.verifier.Verify(&s.ctx, userID, s.hash)
		h.metrics.verifySeconds.Observe(time.Since(start).Seconds())
		switch {
		case verr != nil:
			h.metrics.verifications[verifyError].Inc()
			return fmt.Errorf("sessions: verify token: %w", verr)
		case valid:
			h.metrics.verifications[verifyValid].Inc()
		default:
			h.metrics.verifications[verifyInvalid].Inc()
		}
	}
	switch {
	case !valid:
		return auth.ErrInvalidToken
	case errors.Is(err, ErrNotFound):
		return ErrNotFound
	}
	return nil
}

// errNotObject is reported when a stored session is not a JSON object.
var errNotObject = errors.New("sessions: stored session is not a JSON object")

// fail applies the failure policy (docs/route.md): never 401, 404 or 500.
func (h *Handler) fail(ctx *fasthttp.RequestCtx) bool {
	if h.forward {
		h.metrics.count(outcomeErrorForwarded)
		return false
	}
	h.answer(ctx, outcomeErrorUnavailable)
	return true
}

// answer writes the fixed response of outcome; this and answerInvalid and
// answerSession are the only places that map outcomes to statuses.
func (h *Handler) answer(ctx *fasthttp.RequestCtx, o outcome) {
	h.metrics.count(o)
	switch o {
	case outcomeUnauthorized:
		body := h.unauthorized
		if body == nil {
			body = h.era.Load().unauthorized
		}
		writeJSON(ctx, fasthttp.StatusUnauthorized, body)
	case outcomeNotFound:
		writeJSON(ctx, fasthttp.StatusNotFound, bodyNotFound)
	case outcomeErrorUnavailable:
		writeJSON(ctx, fasthttp.StatusServiceUnavailable, bodyUnavailable)
	default:
		panic("sessions: no fixed answer for outcome " + o.String())
	}
}

func (h *Handler) answerInvalid(ctx *fasthttp.RequestCtx, e *era, q queryResult) {
	h.metrics.count(outcomeInvalid)
	writeJSON(ctx, fasthttp.StatusBadRequest, e.invalid[q])
}

// answerSession writes 200 with the stored document and "success":true as
// its last member, as Rocket.Chat's API.v1.success({...session}) does. It
// returns false, writing nothing, when doc is not a JSON object: serving it
// would send broken JSON, so it is treated as a store failure.
func (h *Handler) answerSession(ctx *fasthttp.RequestCtx, doc string) bool {
	if !validJSONObject(doc) {
		return false
	}
	doc = trimJSONSpace(doc)
	h.metrics.count(outcomeOK)
	setHeaders(ctx, fasthttp.StatusOK)
	if trimJSONSpace(doc[1:len(doc)-1]) == "" {
		ctx.Response.SetBodyRaw(bodySuccessOnly)
		return true
	}
	ctx.Response.SetBodyString(doc[:len(doc)-1])
	ctx.Response.AppendBodyString(`,"success":true}`)
	return true
}

// credentials returns the X-User-Id and X-Auth-Token values. Names are
// matched case-insensitively (RFC 9110 §5.1) although the proxy keeps their
// original case. ok is false unless each is present exactly once and
// non-empty: Node joins a repeated header into "a, b", which matches no
// user and no token, so Rocket.Chat answers 401.
//
// It reads the raw header block rather than RequestHeader.All, which
// rewrites the Cookie header of a request that may still be forwarded.
func credentials(h *fasthttp.RequestHeader) (userID, token []byte, ok bool) {
	raw := h.RawHeaders()
	if len(raw) == 0 {
		// A request built in-process rather than parsed: names are as
		// set, canonical.
		userID, token = h.Peek(headerUserID), h.Peek(headerAuthToken)
		return userID, token, len(userID) > 0 && len(token) > 0
	}
	var users, tokens int
	for k, v := range h.AllInOrder() {
		switch {
		case len(k) == len(headerUserID) && bytes.EqualFold(k, []byte(headerUserID)):
			users++
			userID = v
		case len(k) == len(headerAuthToken) && bytes.EqualFold(k, []byte(headerAuthToken)):
			tokens++
			token = v
		}
	}
	return userID, token, users == 1 && tokens == 1 && len(userID) > 0 && len(token) > 0
}

const (
	headerUserID    = "X-User-Id"
	headerAuthToken = "X-Auth-Token"
)

// nodeAccepts reports whether Node's HTTP parser (llhttp) takes target:
// it refuses a byte of 0x7F or above in the request line with a bare 400.
func nodeAccepts(target []byte) bool {
	for _, c := range target {
		if c >= 0x7f {
			return false
		}
	}
	return true
}

// rawQuery returns the raw query of the request-target: the bytes after the
// first '?', undecoded.
func rawQuery(h *fasthttp.RequestHeader) []byte {
	uri := h.RequestURI()
	if i := bytes.IndexByte(uri, '?'); i >= 0 {
		return uri[i+1:]
	}
	return nil
}

// failureLogEvery is how often, at most, Store failures are logged, so an
// outage cannot flood the logs; per-request detail is in the metrics.
const failureLogEvery = 10 * time.Second

// logFailure reports a Store failure at Warn unless one was logged less
// than failureLogEvery ago; the next line says how many were not.
func (h *Handler) logFailure(err error) {
	n, ok := h.failures.Allow()
	if !ok {
		return
	}
	// err comes from the Store, which never puts keys (they hold the hashed
	// token) in its errors.
	h.log.Warn("session lookup failed", zap.Error(err), zap.Int64("suppressed", n))
}
