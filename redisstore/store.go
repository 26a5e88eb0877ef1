package redisstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/sessions"
)

var _ sessions.Store = (*Store)(nil)

// Store implements sessions.Store on the data contract (docs/data-contract.md). Each
// lookup is one command, so one round trip, on any topology: a user's token
// and session keys share the {userID} hash tag, hence one Cluster slot, so a
// single MGET reaches both.
//
// Errors: auth.ErrInvalidToken and sessions.ErrNotFound for keys that do
// not exist or are of another type than string (MGET answers nil for
// both: the data contract allows only strings, so a hash or a list at a
// token key is no valid token, to Session and Authenticate alike);
// sessions.ErrUnverified, or sessions.ErrUnverifiedNotFound, when the token
// key's value is marked (see Marked); any
// other error is a failure of Redis or of the connection and is wrapped. Errors never contain a key: a
// token key holds the hashed token.
//
// Two implementations sit behind Store. On a standalone server or a
// Sentinel master (client is a *redis.Client, as NewClient returns for
// both), lookups go over Store's own connections in RESP2 (direct), which
// allocate nothing but the document of a hit; on Cluster, and for any other
// UniversalClient, they go through go-redis, which knows the slots.
//
// Store is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	keys   Keys
	direct *direct // nil: lookups through client
}

// New returns a Store using client and the key prefix. With a
// *redis.Client, lookups use connections of Store's own, dialed with
// client's options (address, TLS, user, password, database, Sentinel
// master, pool size); close them with Close. Ping always uses client.
func New(client redis.UniversalClient, prefix string) *Store {
	s := &Store{client: client, keys: Keys{Prefix: prefix}}
	if c, ok := client.(*redis.Client); ok && directCovers(c.Options()) {
		s.direct = newDirect(c, s.keys)
	}
	return s
}

// directCovers reports whether direct connections can do everything the
// client's options ask of a connection: AUTH with a fixed user and
// password, SELECT, TLS and the Sentinel master (both inside the dialer).
// Credentials from a callback, an OnConnect hook or a rate Limiter are
// go-redis's to apply, so such a client keeps the go-redis path. NewClient
// sets none of them.
func directCovers(opt *redis.Options) bool {
	return opt.CredentialsProvider == nil && opt.CredentialsProviderContext == nil &&
		opt.StreamingCredentialsProvider == nil && opt.OnConnect == nil && opt.Limiter == nil &&
		opt.Dialer != nil
}

// Close closes Store's own connections, not the client given to New.
func (s *Store) Close() error {
	if s.direct != nil {
		return s.direct.Close()
	}
	return nil
}

// Ping checks Redis is reachable.
func (s *Store) Ping(ctx context.Context) error { return s.client.Ping(ctx).Err() }

// errShortReply means Redis answered MGET with the wrong number of values,
// which only a proxy in the way could cause.
var errShortReply = errors.New("redisstore: mget: wrong number of values")

// Session fetches the token key and the session key of userID with one
// MGET and returns the session document. The ids must have been checked to
// hold no '{' or '}' (see Keys); the slices are not kept.
func (s *Store) Session(ctx context.Context, userID, hashedToken, sessionID []byte) (string, error) {
	if s.direct != nil {
		return s.direct.Session(ctx, userID, hashedToken, sessionID)
	}
	ctx, cancel := withDone(ctx)
	defer cancel()
	tokenKey, sessionKey := s.lookupKeys(userID, hashedToken, sessionID)
	vals, err := s.client.MGet(ctx, tokenKey, sessionKey).Result()
	if err != nil {
		return "", fmt.Errorf("redisstore: mget: %w", err)
	}
	if len(vals) != 2 {
		return "", errShortReply
	}
	token, tokenFound := vals[0].(string)
	doc, docFound := vals[1].(string)
	return lookupResult(doc, tokenFound, tokenFound && Marked(token), docFound)
}

// lookupResult is Session's answer for what the MGET found, on both
// paths.
func lookupResult(doc string, tokenFound, marked, docFound bool) (string, error) {
	switch {
	case !tokenFound:
		return "", auth.ErrInvalidToken
	case marked && !docFound:
		return "", sessions.ErrUnverifiedNotFound
	case marked:
		return doc, sessions.ErrUnverified
	case !docFound:
		return "", sessions.ErrNotFound
	}
	return doc, nil
}

// Authenticate checks that the token key of userID holds a string, with
// an MGET of that key alone: the same command and the same rule as
// Session's, so a token key of another type is invalid to both (EXISTS
// would count it).
func (s *Store) Authenticate(ctx context.Context, userID, hashedToken []byte) error {
	if s.direct != nil {
		return s.direct.Authenticate(ctx, userID, hashedToken)
	}
	ctx, cancel := withDone(ctx)
	defer cancel()
	var buf [256]byte
	key := string(s.keys.AppendTokenKey(buf[:0], userID, hashedToken))
	vals, err := s.client.MGet(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("redisstore: mget: %w", err)
	}
	if len(vals) != 1 {
		return errShortReply
	}
	token, ok := vals[0].(string)
	switch {
	case !ok:
		return auth.ErrInvalidToken
	case Marked(token):
		return sessions.ErrUnverified
	}
	return nil
}

// lookupKeys builds both keys in one string allocation.
func (s *Store) lookupKeys(userID, hashedToken, sessionID []byte) (tokenKey, sessionKey string) {
	var buf [512]byte
	b := s.keys.AppendTokenKey(buf[:0], userID, hashedToken)
	n := len(b)
	both := string(s.keys.AppendSessionKey(b, userID, sessionID))
	return both[:n], both[n:]
}

// withDone gives go-redis a context whose Done closes at the deadline when
// ctx has a deadline but no Done (sessions.Handler's deadline-only
// context). go-redis takes its socket deadlines from ctx.Deadline()
// (ContextTimeoutEnabled), but waits for a pool turn or a Cluster
// redirection on ctx.Done(): with a nil Done, only PoolTimeout would bound
// that wait. The Cluster path keeps the bound it always had, at the cost of
// context.WithDeadline's allocations, which only the direct path avoids.
// context.WithDeadline(ctx, d) would not do: with ctx's own deadline no
// later than d it returns a cancel-only context that never times out.
func withDone(ctx context.Context) (context.Context, context.CancelFunc) {
	if ctx.Done() != nil {
		return ctx, func() {}
	}
	if d, ok := ctx.Deadline(); ok {
		return context.WithDeadline(context.WithoutCancel(ctx), d)
	}
	return ctx, func() {}
}
