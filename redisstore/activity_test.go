package redisstore_test

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/redisstore"
)

func TestActivityReporterBatchesIntoTheActiveSet(t *testing.T) {
	rdb := startStoreTestServer(t).client(t)
	rep := redisstore.NewActivityReporter(rdb, "rc:", 8, 20*time.Millisecond, nil)
	hit, miss := auth.HashToken("valid"), auth.HashToken("wrong")
	// Many lookups of one token in one interval are one entry.
	for range 5 {
		rep.Report(redisstore.ActivityHit, []byte("u1"), []byte(hit))
	}
	rep.Report(redisstore.ActivityMiss, []byte("u2"), []byte(miss))
	rep.Report(redisstore.ActivityHit, []byte("u1"), []byte("not-a-hash")) // ignored
	// The queue holds 8: what does not fit is dropped, never waited for.
	for i := range 10 {
		rep.Report(redisstore.ActivityHit, []byte(fmt.Sprint("x", i)), []byte(hit))
	}
	if got := rep.Dropped(); got != 16-8 {
		t.Errorf("dropped: got %d, want %d", got, 16-8)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rep.Run(ctx) }()
	defer func() { cancel(); <-done }()

	w := redisstore.NewWriter(rdb, "rc:", 100)
	var got []redisstore.ActiveToken
	for deadline := time.Now().Add(5 * time.Second); len(got) < 4; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("active tokens: got %+v, want the reports", got)
		}
		var err error
		if got, err = w.ActiveTokens(context.Background(), time.Now().Add(-time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	var desc []string
	for _, a := range got {
		desc = append(desc, fmt.Sprintf("%c %s %s", a.Kind, a.UserID, a.Hash))
	}
	sort.Strings(desc)
	want := []string{"h u1 " + hit, "h x0 " + hit, "h x1 " + hit, "m u2 " + miss}
	if fmt.Sprint(desc) != fmt.Sprint(want) {
		t.Errorf("active tokens:\ngot  %v\nwant %v", desc, want)
	}

	// Entries older than the window go.
	if got, _ := w.ActiveTokens(context.Background(), time.Now().Add(time.Minute)); len(got) != 0 {
		t.Errorf("after the window: got %d entries, want 0", len(got))
	}
}

func TestActivityReporterBoundsMisses(t *testing.T) {
	rdb := startStoreTestServer(t).client(t)
	// Queued past half the queue's room: Run takes them (and applies the
	// bound) without waiting for its hour-long flush.
	rep := redisstore.NewActivityReporter(rdb, "rc:", 400, time.Hour, nil)
	for i := range 300 {
		rep.Report(redisstore.ActivityMiss, []byte("u1"), []byte(auth.HashToken(fmt.Sprint(i))))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	rep.Run(ctx) // one hour between flushes: nothing written, but drained into the batch
	if got := rep.Dropped(); got != 300-256 {
		t.Errorf("misses dropped: got %d, want %d (256 per flush)", got, 300-256)
	}
}

// TestActivityReporterMakesRoomEarly: between flushes, Run takes what
// is queued once the queue is half full, so a burst larger than the queue
// is not dropped when it comes in parts.
func TestActivityReporterMakesRoomEarly(t *testing.T) {
	rdb := startStoreTestServer(t).client(t)
	rep := redisstore.NewActivityReporter(rdb, "rc:", 100, time.Hour, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); rep.Run(ctx) }()
	defer func() { cancel(); <-done }()
	hash := []byte(auth.HashToken("valid"))
	for part := range 5 {
		for i := range 60 {
			rep.Report(redisstore.ActivityHit, []byte(fmt.Sprint("u", part, "-", i)), hash)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if got := rep.Dropped(); got != 0 {
		t.Errorf("dropped: got %d of 300 reports in parts of 60 to a queue of 100, want 0", got)
	}
}

func TestDeleteUser(t *testing.T) {
	rdb := startStoreTestServer(t).client(t)
	w := redisstore.NewWriter(rdb, "rc:", 100)
	ctx := context.Background()
	_, err := w.WriteUserTokens(ctx, []redisstore.UserTokens{{UserID: "u1", Version: 1, Tokens: []redisstore.Token{
		{Hash: auth.HashToken("a"), Value: []byte("{}")}, {Hash: auth.HashToken("b"), Value: []byte("{}")},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	// A key outside the index (written by an older version) goes when named.
	rdb.Set(ctx, "rc:{u1}:token:"+auth.HashToken("c"), "{}", 0)
	n, err := w.DeleteUser(ctx, "u1", auth.HashToken("c"))
	if err != nil || n != 3 {
		t.Fatalf("DeleteUser: got %d, %v; want 3", n, err)
	}
	if keys, _ := rdb.Keys(ctx, "rc:{u1}*").Result(); len(keys) != 0 {
		t.Errorf("keys left: %v", keys)
	}
}

// Report is on the route's path: it must not allocate.
func TestActivityReportDoesNotAllocate(t *testing.T) {
	rep := redisstore.NewActivityReporter(nil, "rc:", 4, 0, nil)
	user, hash := []byte("u1"), []byte(auth.HashToken("t"))
	if n := testing.AllocsPerRun(100, func() { rep.Report(redisstore.ActivityHit, user, hash) }); n != 0 {
		t.Errorf("Report allocates %v times, want 0", n)
	}
}
