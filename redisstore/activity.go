package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/auth"
)

// activityName is the sorted set of recently seen login tokens,
// "<p>mirror:active": members "<h|m><hashedToken><userId>" (h: the token
// key was there, m: it was not), scored by the time last seen in Unix
// milliseconds. The proxy adds to it; the mirror reads it and re-checks
// those tokens against MongoDB, so a token removed without touching the
// user's _updatedAt still disappears from Redis within a second or two.
const activityName = "mirror:active"

// Kinds of activity.
const (
	// ActivityHit: the token key existed (the route answered 200 or 404).
	ActivityHit = 'h'
	// ActivityMiss: it did not (the route answered 401).
	ActivityMiss = 'm'
)

// activity is one report, held by value in the channel so that Report
// does not allocate.
type activity struct {
	kind byte
	n    uint16 // length of user
	hash [auth.HashedTokenLen]byte
	user [256]byte
}

// ActivityReporter hands the tokens the route has just looked up to the
// mirror, off the request's path: Report only offers them to a bounded
// channel (dropping, and counting, when it is full) and Run writes them to
// Redis in batches.
//
// Run takes the reports from the channel at each flush, not one by one: a
// goroutine woken for every lookup cost the route a scheduler wake-up per
// request. Report wakes it early only when the channel is half full.
type ActivityReporter struct {
	client  redis.UniversalClient
	key     string
	ch      chan activity
	kick    chan struct{} // Report's early wake-up of Run
	every   time.Duration
	log     *zap.Logger
	dropped atomic.Uint64
	written atomic.Uint64
}

// maxMissesPerFlush bounds the 401s reported per flush.
const maxMissesPerFlush = 256

// DefaultActivityQueue is the reporter's channel capacity.
const DefaultActivityQueue = 4096

// NewActivityReporter returns a reporter writing under prefix, holding at
// most queue reports (DefaultActivityQueue when not positive) and flushing
// every flushEvery (100ms when not positive).
func NewActivityReporter(client redis.UniversalClient, prefix string, queue int, flushEvery time.Duration, log *zap.Logger) *ActivityReporter {
	if queue <= 0 {
		queue = DefaultActivityQueue
	}
	if flushEvery <= 0 {
		flushEvery = 100 * time.Millisecond
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &ActivityReporter{client: client, key: prefix + activityName, ch: make(chan activity, queue),
		kick: make(chan struct{}, 1), every: flushEvery, log: log.Named("activity")}
}

// Report offers one lookup of hashedToken for userID; kind is ActivityHit
// or ActivityMiss. It never blocks and does not allocate; it keeps neither
// slice. Tokens that are not a hashed token's length, or user ids longer
// than 256 bytes, are ignored (the route never sees either as valid).
func (r *ActivityReporter) Report(kind byte, userID, hashedToken []byte) {
	if len(hashedToken) != auth.HashedTokenLen || len(userID) == 0 || len(userID) > 256 {
		return
	}
	var a activity
	a.kind = kind
	a.n = uint16(len(userID))
	copy(a.hash[:], hashedToken)
	copy(a.user[:], userID)
	select {
	case r.ch <- a:
	default:
		r.dropped.Add(1)
		return
	}
	if len(r.ch) >= cap(r.ch)/2 {
		select {
		case r.kick <- struct{}{}:
		default: // a wake-up is pending already
		}
	}
}

// Dropped is how many reports were dropped because the queue was full.
func (r *ActivityReporter) Dropped() uint64 { return r.dropped.Load() }

// Written is how many distinct reports were written to Redis.
func (r *ActivityReporter) Written() uint64 { return r.written.Load() }

// Run writes the reports to Redis every flush interval until ctx ends. A
// token seen many times in one interval is written once.
func (r *ActivityReporter) Run(ctx context.Context) {
	t := time.NewTicker(r.every)
	defer t.Stop()
	batch := make(map[string]struct{})
	misses := 0
	add := func(a activity) {
		if a.kind == ActivityMiss {
			// 401s are mostly wrong tokens; a new login needs only one
			// of its first few reported. Bounded per flush so that a
			// flood of made-up tokens cannot crowd out the valid ones.
			if misses >= maxMissesPerFlush {
				r.dropped.Add(1)
				return
			}
			misses++
		}
		batch[string(a.kind)+string(a.hash[:])+string(a.user[:a.n])] = struct{}{}
	}
	failures := 0
	for {
		// Take what is queued now: on a wake-up to make room, or
		// before a flush, so that the flush carries it.
		flush := false
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		case <-t.C:
			flush = true
		}
	drain:
		for len(batch) < 10000 {
			select {
			case a := <-r.ch:
				add(a)
			default:
				break drain
			}
		}
		if !flush {
			continue
		}
		misses = 0
		if len(batch) == 0 {
			continue
		}
		score := float64(time.Now().UnixMilli())
		zs := make([]redis.Z, 0, len(batch))
		for m := range batch {
			zs = append(zs, redis.Z{Score: score, Member: m})
		}
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		err := r.client.ZAdd(wctx, r.key, zs...).Err()
		cancel()
		if err != nil {
			// Lost reports only delay what the mirror re-checks; the
			// batch is not retried so that an outage cannot grow it.
			failures++
			if failures == 1 || failures%100 == 0 {
				r.log.Warn("activity report failed", zap.Error(err), zap.Int("consecutive_failures", failures))
			}
		} else {
			failures = 0
			r.written.Add(uint64(len(zs)))
		}
		clear(batch)
	}
}

// ActiveToken is one entry of the activity set.
type ActiveToken struct {
	Kind   byte
	Hash   string
	UserID string
	// Member is the entry as stored, for RemoveActive.
	Member string
	// Seen is when the proxy last reported it.
	Seen time.Time
}

// MaxActiveTokens bounds the activity set: beyond it the oldest entries
// go, so a flood of made-up tokens cannot grow it without limit.
const MaxActiveTokens = 200000

// ActiveTokens returns the entries of the activity set seen at or after
// since, after cooling those seen before it (and the oldest beyond
// MaxActiveTokens): see cool.
func (w *Writer) ActiveTokens(ctx context.Context, since time.Time) ([]ActiveToken, error) {
	if err := w.cool(ctx, since); err != nil {
		return nil, err
	}
	key := w.keys.Prefix + activityName
	cut := strconv.FormatInt(since.UnixMilli(), 10)
	members, err := w.client.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: cut, Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("read active tokens: %w", err)
	}
	return parseActive(members), nil
}

func parseActive(members []redis.Z) []ActiveToken {
	out := make([]ActiveToken, 0, len(members))
	for _, z := range members {
		m, ok := z.Member.(string)
		if !ok || len(m) < 2+auth.HashedTokenLen {
			continue
		}
		out = append(out, ActiveToken{Kind: m[0], Hash: m[1 : 1+auth.HashedTokenLen], UserID: m[1+auth.HashedTokenLen:],
			Member: m, Seen: time.UnixMilli(int64(z.Score))})
	}
	return out
}

// removeIfOldScript removes members of the sorted set KEYS[1] whose score
// is still at most the one given (ARGV: member, score, ...): an entry
// refreshed since it was read stays.
var removeIfOldScript = redis.NewScript(`
local n = 0
for i = 1, #ARGV, 2 do
  local s = redis.call('ZSCORE', KEYS[1], ARGV[i])
  if s and tonumber(s) <= tonumber(ARGV[i + 1]) then
    n = n + redis.call('ZREM', KEYS[1], ARGV[i])
  end
end
return n
`)

// cool takes out of the activity set the entries seen before since, and
// the oldest beyond MaxActiveTokens. A token key that was there ('h') may
// be unmarked, valid by its presence alone, because the mirror re-checks
// it every poll; before its entry goes, its key is marked again, so the
// proxy asks the mirror before serving it next (docs/data-contract.md).
// Marking first, then removing only entries nobody refreshed meanwhile,
// never leaves an unmarked key outside the set.
func (w *Writer) cool(ctx context.Context, since time.Time) error {
	key := w.keys.Prefix + activityName
	cut := "(" + strconv.FormatInt(since.UnixMilli(), 10)
	for range 1000 { // bounded: each round takes out what it read
		old, err := w.client.ZRangeByScoreWithScores(ctx, key, &redis.ZRangeBy{Min: "-inf", Max: cut, Count: int64(w.batch)}).Result()
		if err != nil {
			return fmt.Errorf("cool active tokens: %w", err)
		}
		if len(old) == 0 {
			break
		}
		if err := w.coolEntries(ctx, old); err != nil {
			return err
		}
		if len(old) < w.batch {
			break
		}
	}
	n, err := w.client.ZCard(ctx, key).Result()
	if err != nil {
		return fmt.Errorf("cool active tokens: %w", err)
	}
	for over := n - MaxActiveTokens; over > 0; over -= int64(w.batch) {
		old, err := w.client.ZRangeWithScores(ctx, key, 0, min(over, int64(w.batch))-1).Result()
		if err != nil {
			return fmt.Errorf("cool active tokens: %w", err)
		}
		if err := w.coolEntries(ctx, old); err != nil {
			return err
		}
	}
	return nil
}

func (w *Writer) coolEntries(ctx context.Context, entries []redis.Z) error {
	var hashes, users []string
	args := make([]any, 0, 2*len(entries))
	for _, z := range entries {
		m, _ := z.Member.(string)
		args = append(args, m, strconv.FormatFloat(z.Score, 'f', -1, 64))
	}
	for _, a := range parseActive(entries) {
		if a.Kind == ActivityHit {
			hashes = append(hashes, a.Hash)
			users = append(users, a.UserID)
		}
	}
	if err := w.setMarks(ctx, true, hashes, users); err != nil {
		return err
	}
	err := removeIfOldScript.Run(ctx, w.client, []string{w.keys.Prefix + activityName}, args...).Err()
	if err != nil {
		return fmt.Errorf("cool active tokens: %w", err)
	}
	return nil
}

// ClearActive empties the activity set: a mirror following change streams
// has no use for it.
func (w *Writer) ClearActive(ctx context.Context) error {
	if err := w.client.Del(ctx, w.keys.Prefix+activityName).Err(); err != nil {
		return fmt.Errorf("clear active tokens: %w", err)
	}
	return nil
}

// RemoveActive removes entries the mirror has dealt with for good.
func (w *Writer) RemoveActive(ctx context.Context, members []string) error {
	if len(members) == 0 {
		return nil
	}
	args := make([]any, len(members))
	for i, m := range members {
		args[i] = m
	}
	if err := w.client.ZRem(ctx, w.keys.Prefix+activityName, args...).Err(); err != nil {
		return fmt.Errorf("remove active tokens: %w", err)
	}
	return nil
}

// deleteUserScript deletes every token key in a user's index, and the
// index: the user is gone from MongoDB.
var deleteUserScript = redis.NewScript(`
local idx = KEYS[1]
local prefix = ARGV[1]
local n = 0
for _, f in ipairs(redis.call('HKEYS', idx)) do
  if string.sub(f, 1, 2) == 't:' then
    n = n + redis.call('DEL', prefix .. string.sub(f, 3))
  end
end
for i = 2, #ARGV do n = n + redis.call('DEL', prefix .. ARGV[i]) end
redis.call('DEL', idx)
return n
`)

// DeleteUser removes every token key of a user that no longer exists
// (those in its index, and the extra hashes given), and its index. It
// returns how many token keys it deleted.
func (w *Writer) DeleteUser(ctx context.Context, userID string, hashes ...string) (int, error) {
	args := make([]any, 0, 1+len(hashes))
	args = append(args, w.keys.TokenKey(userID, ""))
	for _, h := range hashes {
		args = append(args, h)
	}
	n, err := deleteUserScript.Run(ctx, w.client, []string{w.indexKey(userID)}, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("delete user: %w", err)
	}
	return n, nil
}
