package redisstore_test

import (
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/auth"
)

// BenchmarkStoreSession: one lookup (a hit) per op on a local
// redis-server, for each implementation, with the deadline-only context
// sessions.Handler passes. The direct path allocates only the document;
// the go-redis path (Cluster) adds go-redis's own and a deadline timer.
//
//	go test -run '^$' -bench StoreSession -benchmem ./redisstore/
func BenchmarkStoreSession(b *testing.B) {
	for _, impl := range storeImpls {
		b.Run("impl="+impl.name, func(b *testing.B) {
			srv := startStoreTestServer(b)
			if srv.cmd == nil {
				b.Skip("needs a real redis-server")
			}
			rdb := srv.client(b)
			storeSeed(b, rdb, "alice", "alice-token", map[string]string{"s1": `{"sessionId":"s1"}`})
			s := impl.build(rdb, storeTestPrefix)
			b.Cleanup(func() { s.Close() })
			user, hash, session := []byte("alice"), []byte(auth.HashToken("alice-token")), []byte("s1")
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				ctx := new(deadlineOnly) // a pointer, as the Handler's: no boxing per op
				for pb.Next() {
					ctx.d = time.Now().Add(time.Second)
					if _, err := s.Session(ctx, user, hash, session); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
