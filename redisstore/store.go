package redisstore

import (
	"context"

	"github.com/redis/go-redis/v9"
)

// Store implements sessions.Store on Redis.
// FIRST DRAFT: to be finished by the route work.
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
