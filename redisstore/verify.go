package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/auth"
	"github.com/sessiongate/sessiongate/config"
	"github.com/sessiongate/sessiongate/sessions"
)

// A token key marked with VerifyMarker is served only once the mirror has
// confirmed it against MongoDB. The proxy asks with one round trip:
//
//	RPUSH <p>mirror:verify "<nonce> <hashedToken> <userId>"
//	BLPOP <p>mirror:verified:<nonce> <wait>
//
// and the mirror answers "1" (valid: it has unmarked the key and added it to
// the active set, which it re-checks every poll) or "0" (invalid: it has
// rewritten the user's token set, deleting the key) by RPUSH to the reply
// list, which expires after replyTTL.
const (
	verifyQueueName  = "mirror:verify"
	verifyReplyName  = "mirror:verified:"
	verifyReplyTTL   = 5 * time.Second
	verifyReplyValid = "1"
	// maxVerifyQueue bounds the questions waiting: beyond it the oldest,
	// whose askers have given up by then, are dropped.
	maxVerifyQueue = 10000
)

var _ sessions.Verifier = (*Verifier)(nil)

// Verifier is the proxy's side of the verification round trip
// (sessions.Verifier).
type Verifier struct {
	client redis.UniversalClient
	queue  string
	reply  string
	seed   string
	n      atomic.Uint64
}

// NewVerifyClient returns a client for a Verifier: the same topology and
// credentials as NewClient, with a socket timeout longer than wait, since
// each verification blocks a connection until the mirror answers. It must
// not be the route's client, whose timeout is redis.timeout.
func NewVerifyClient(cfg *config.Redis, wait time.Duration) (redis.UniversalClient, error) {
	c := *cfg
	c.Timeout = max(c.Timeout, wait+time.Second)
	return NewClient(&c)
}

// NewVerifier returns a Verifier over client (see NewVerifyClient) under
// prefix.
func NewVerifier(client redis.UniversalClient, prefix string) *Verifier {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Verifier{client: client, queue: prefix + verifyQueueName, reply: prefix + verifyReplyName,
		seed: hex.EncodeToString(b[:]) + "-"}
}

// ErrNoVerification means the mirror did not answer before the deadline:
// it is stopped, lagging, or not in poll mode.
var ErrNoVerification = errors.New("redisstore: no verification from the mirror before the deadline")

// Verify asks the mirror whether hashedToken is still a valid login token of
// userID, waiting until ctx's deadline (1s when it has none).
func (v *Verifier) Verify(ctx context.Context, userID, hashedToken []byte) (bool, error) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(time.Second)
	}
	// The server gives up before the socket does, so a missing answer is
	// usually an empty reply on a connection that stays usable.
	wait := time.Until(deadline)
	wait -= min(wait/5, 200*time.Millisecond)
	if wait < time.Millisecond {
		return false, ErrNoVerification
	}
	ctx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	nonce := v.seed + strconv.FormatUint(v.n.Add(1), 36)
	var pop *redis.Cmd
	_, err := v.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.RPush(ctx, v.queue, nonce+" "+string(hashedToken)+" "+string(userID))
		// While no mirror reads the queue (stopped, or following change
		// streams), questions nobody will answer must not pile up.
		p.LTrim(ctx, v.queue, -maxVerifyQueue, -1)
		pop = p.Do(ctx, "BLPOP", v.reply+nonce, strconv.FormatFloat(wait.Seconds(), 'f', 3, 64))
		return nil
	})
	switch {
	case errors.Is(err, redis.Nil):
		return false, ErrNoVerification
	case errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded):
		return false, fmt.Errorf("%w: %w", ErrNoVerification, err)
	case err != nil:
		return false, fmt.Errorf("redisstore: verify: %w", err)
	}
	got, err := pop.StringSlice()
	if err != nil || len(got) != 2 {
		return false, fmt.Errorf("redisstore: verify: unexpected reply")
	}
	return got[1] == verifyReplyValid, nil
}

// VerifyRequest is one question from a proxy.
type VerifyRequest struct {
	Nonce, Hash, UserID string
}

// NextVerifications waits up to wait for questions and returns at most max
// of them (none when wait passed without any).
func (w *Writer) NextVerifications(ctx context.Context, wait time.Duration, max int) ([]VerifyRequest, error) {
	key := w.keys.Prefix + verifyQueueName
	first, err := w.client.BLPop(ctx, wait, key).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read verifications: %w", err)
	}
	raw := first[1:]
	if max > 1 {
		more, err := w.client.LPopCount(ctx, key, max-1).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read verifications: %w", err)
		}
		raw = append(raw, more...)
	}
	out := make([]VerifyRequest, 0, len(raw))
	for _, r := range raw {
		nonce, rest, ok1 := strings.Cut(r, " ")
		hash, user, ok2 := strings.Cut(rest, " ")
		if !ok1 || !ok2 || nonce == "" || len(hash) != auth.HashedTokenLen || user == "" {
			continue // not a proxy's question: nobody waits for it
		}
		out = append(out, VerifyRequest{Nonce: nonce, Hash: hash, UserID: user})
	}
	return out, nil
}

// AnswerVerifications replies to each request: valid[i] for reqs[i].
func (w *Writer) AnswerVerifications(ctx context.Context, reqs []VerifyRequest, valid []bool) error {
	if len(reqs) == 0 {
		return nil
	}
	_, err := w.client.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, r := range reqs {
			key := w.keys.Prefix + verifyReplyName + r.Nonce
			ans := "0"
			if valid[i] {
				ans = verifyReplyValid
			}
			p.RPush(ctx, key, ans)
			p.PExpire(ctx, key, verifyReplyTTL)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("answer verifications: %w", err)
	}
	return nil
}

// markScript marks (ARGV[1] = "1") or unmarks (ARGV[1] = "0") a token key
// holding a JSON object, keeping its expiry; a missing key stays missing,
// a key of another shape is left alone.
var markScript = redis.NewScript(`
local v = redis.pcall('GET', KEYS[1])
if type(v) ~= 'string' or string.sub(v, 1, 1) ~= '{' then return 0 end
local m = '{"verify":true'
local marked = string.sub(v, 1, #m) == m and (string.sub(v, #m + 1, #m + 1) == ',' or string.sub(v, #m + 1, #m + 1) == '}')
if ARGV[1] == '1' then
  if marked then return 0 end
  if v == '{}' then v = m .. '}' else v = m .. ',' .. string.sub(v, 2) end
else
  if not marked then return 0 end
  if string.sub(v, #m + 1, #m + 1) == '}' then v = '{}' else v = '{' .. string.sub(v, #m + 2) end
end
redis.call('SET', KEYS[1], v, 'KEEPTTL', 'XX')
return 1
`)

// setMarks marks or unmarks the token keys of tokens (hash, user id).
func (w *Writer) setMarks(ctx context.Context, mark bool, hashes, users []string) error {
	if len(hashes) == 0 {
		return nil
	}
	flag := "0"
	if mark {
		flag = "1"
	}
	run := func() error {
		_, err := w.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i := range hashes {
				markScript.EvalSha(ctx, p, []string{w.keys.TokenKey(users[i], hashes[i])}, flag)
			}
			return nil
		})
		return err
	}
	err := run()
	if isNoScript(err) {
		if err := w.loadScripts(ctx); err != nil {
			return err
		}
		err = run()
	}
	if err != nil {
		return fmt.Errorf("mark tokens: %w", err)
	}
	return nil
}

// Warm records tokens just verified valid: first their entries in the
// activity set (so the re-check covers them from now on), then their keys
// unmarked, so an unmarked key is never outside the re-checked set.
func (w *Writer) Warm(ctx context.Context, reqs []VerifyRequest) error {
	if len(reqs) == 0 {
		return nil
	}
	score := float64(time.Now().UnixMilli())
	zs := make([]redis.Z, len(reqs))
	hashes := make([]string, len(reqs))
	users := make([]string, len(reqs))
	for i, r := range reqs {
		zs[i] = redis.Z{Score: score, Member: string(rune(ActivityHit)) + r.Hash + r.UserID}
		hashes[i], users[i] = r.Hash, r.UserID
	}
	if err := w.client.ZAdd(ctx, w.keys.Prefix+activityName, zs...).Err(); err != nil {
		return fmt.Errorf("warm tokens: %w", err)
	}
	return w.setMarks(ctx, false, hashes, users)
}
