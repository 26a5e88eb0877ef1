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

// Store implements sessions.Store on the data contract (SPEC §3). Each
// lookup is one command, so one round trip, on any topology: a user's token
// and session keys share the {userID} hash tag, hence one Cluster slot, so a
// single MGET reaches both.
//
// Errors: auth.ErrInvalidToken and sessions.ErrNotFound for keys that do
// not exist (MGET also answers nil for a key of another type than string,
// which the data contract does not allow); any other error is a failure of
// Redis or of the connection and is wrapped. Errors never contain a key: a
// token key holds the hashed token.
//
// Store is safe for concurrent use.
type Store struct {
	client redis.UniversalClient
	keys   Keys
}

// New returns a Store using client and the key prefix.
func New(client redis.UniversalClient, prefix string) *Store {
	return &Store{client: client, keys: Keys{Prefix: prefix}}
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
	tokenKey, sessionKey := s.lookupKeys(userID, hashedToken, sessionID)
	vals, err := s.client.MGet(ctx, tokenKey, sessionKey).Result()
	if err != nil {
		return "", fmt.Errorf("redisstore: mget: %w", err)
	}
	if len(vals) != 2 {
		return "", errShortReply
	}
	if vals[0] == nil {
		return "", auth.ErrInvalidToken
	}
	doc, ok := vals[1].(string)
	if !ok {
		return "", sessions.ErrNotFound
	}
	return doc, nil
}

// Authenticate checks that the token key of userID exists, with one
// EXISTS.
func (s *Store) Authenticate(ctx context.Context, userID, hashedToken []byte) error {
	var buf [256]byte
	key := string(s.keys.AppendTokenKey(buf[:0], userID, hashedToken))
	n, err := s.client.Exists(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("redisstore: exists: %w", err)
	}
	if n == 0 {
		return auth.ErrInvalidToken
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
