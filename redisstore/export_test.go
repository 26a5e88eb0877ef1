package redisstore

import "github.com/redis/go-redis/v9"

// NewViaGoRedis returns a Store that makes every lookup through client, as
// New does for Cluster, so that the conformance suite can run the go-redis
// implementation against a standalone server.
func NewViaGoRedis(client redis.UniversalClient, prefix string) *Store {
	return &Store{client: client, keys: Keys{Prefix: prefix}}
}

// UsesDirect reports whether s makes its lookups over its own connections.
func (s *Store) UsesDirect() bool { return s.direct != nil }
