package redisstore

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/sessiongate/sessiongate/config"
)

// The mirror's own keys. They sit under the prefix without a hash tag
// ("<p>mirror:..."), so they never collide with the data contract's
// "<p>{<userId>}:..." keys.
const (
	heartbeatName  = "mirror:heartbeat"
	checkpointName = "mirror:checkpoint"
)

// tokenIndexSuffix names the mirror's per-user token index,
// "<p>{<userId>}:mirror": a hash whose field "v" is the version (the users
// document's _updatedAt in Unix milliseconds) of the token set last written,
// and whose fields "t:<hashedToken>" list the token keys written for the
// user. It shares the user's hash slot, so one script updates the index and
// the token keys atomically, in Redis Cluster too. The proxy never reads it.
const tokenIndexSuffix = ":mirror"

// ErrNoHeartbeat is returned by MirrorHeartbeat when no mirror has written a
// heartbeat yet. It is not a Redis failure.
var ErrNoHeartbeat = errors.New("redisstore: no mirror heartbeat")

// ErrNoCheckpoint is returned by Writer.LoadCheckpoint when no mirror has
// completed an initial sync under this prefix. It is not a Redis failure.
var ErrNoCheckpoint = errors.New("redisstore: no mirror checkpoint")

// mirrorTimeout is the mirror's per-command deadline: it pipelines
// thousands of writes per round trip, far more than the route's
// redis.timeout is meant for.
const mirrorTimeout = 30 * time.Second

// NewMirrorClient returns a client for `sessiongate mirror`: the same
// topology and credentials as NewClient, with read and write timeouts long
// enough for large pipelines. Retries stay off: the mirror repeats a failed
// cycle as a whole, and every write it makes is idempotent.
func NewMirrorClient(cfg *config.Redis) (redis.UniversalClient, error) {
	c := *cfg
	c.Timeout = max(c.Timeout, mirrorTimeout)
	return NewClient(&c)
}

// MirrorHeartbeat returns the time as of which the mirror writing under
// prefix last had Redis in step with MongoDB. It returns ErrNoHeartbeat when
// there is none, and any other error only when Redis failed.
func MirrorHeartbeat(ctx context.Context, client redis.UniversalClient, prefix string) (time.Time, error) {
	ms, err := client.Get(ctx, prefix+heartbeatName).Int64()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, ErrNoHeartbeat
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("read mirror heartbeat: %w", err)
	}
	return time.UnixMilli(ms), nil
}

// Writer is the mirror's write side of the data contract (docs/data-contract.md): session
// and token keys, the per-user token index, the checkpoint and the
// heartbeat. It is safe for concurrent use, and every method is idempotent,
// so several mirrors may write at once.
type Writer struct {
	client redis.UniversalClient
	keys   Keys
	batch  int
	mark   atomic.Bool // poll mode: see SetMarking
}

// SetMarking turns marking on (poll mode) or off (change-stream mode):
// on, WriteUserTokens writes keys with MarkNew, or MarkAll for
// UserTokens.MarkAll; off, with MarkNone.
func (w *Writer) SetMarking(on bool) { w.mark.Store(on) }

// NewWriter returns a Writer for client under prefix that sends at most
// batchSize commands per pipeline (1000 when batchSize is not positive).
func NewWriter(client redis.UniversalClient, prefix string, batchSize int) *Writer {
	if batchSize <= 0 {
		batchSize = 1000
	}
	return &Writer{client: client, keys: Keys{Prefix: prefix}, batch: batchSize}
}

// Ping checks Redis is reachable.
func (w *Writer) Ping(ctx context.Context) error {
	if err := w.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("ping redis: %w", err)
	}
	return nil
}

// SessionWrite sets (Value non-nil) or deletes (Value nil) one session key.
// Value is the session document in its REST form; the Writer does not keep
// it after WriteSessions returns.
type SessionWrite struct {
	UserID, SessionID string
	Value             []byte
}

// WriteSessions applies writes in pipelines of the batch size. Session keys
// never expire: Rocket.Chat serves logged-out sessions too.
func (w *Writer) WriteSessions(ctx context.Context, writes []SessionWrite) error {
	for len(writes) > 0 {
		n := min(len(writes), w.batch)
		_, err := w.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, s := range writes[:n] {
				key := w.keys.SessionKey(s.UserID, s.SessionID)
				if s.Value == nil {
					p.Del(ctx, key)
				} else {
					p.Set(ctx, key, s.Value, 0)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("write sessions: %w", err)
		}
		writes = writes[n:]
	}
	return nil
}

// Token is one login token of a user, as the mirror writes it.
type Token struct {
	// Hash is the hashed token (44 characters of base64), never a plain
	// token.
	Hash string
	// Value is the key's value: small JSON metadata.
	Value []byte
	// TTL is the time left until the token expires; 0 means it never
	// does. Callers leave expired tokens out.
	TTL time.Duration
}

// UserTokens is the complete set of valid login tokens of one user as of
// Version.
type UserTokens struct {
	UserID string
	// Version orders the user's states: the document's _updatedAt in Unix
	// milliseconds. A write older than the one last applied is refused.
	Version int64
	Tokens  []Token
	// Stale lists hashes of token keys found in Redis outside the index;
	// those not in Tokens are deleted too.
	Stale []string
	// Force applies the set whatever version Redis holds (the index keeps
	// the larger version): for a state read after a change event, which is
	// newer than anything applied before it even when _updatedAt is not.
	Force bool
	// MarkAll marks every key written when the Writer marks at all (see
	// SetMarking): for a full sync, after which no key may be unmarked
	// without being re-checked.
	MarkAll bool
}

// syncTokensScript replaces a user's token keys with the given set unless a
// newer version was already applied, so a slow mirror never resurrects a
// token that a faster one saw removed.
//
// KEYS[1] is the user's index; the token keys share its hash slot (same
// {userId} tag). ARGV: version, token key prefix, token count, marking (see
// Marking), then (hash, ttl ms, value) per token, then stale hashes. With
// MarkNew a key that exists unmarked (warm: the mirror re-checks it every
// poll) is rewritten unmarked, any other marked.
var syncTokensScript = redis.NewScript(`
local idx = KEYS[1]
local version = tonumber(ARGV[1])
local prefix = ARGV[2]
local n = tonumber(ARGV[3])
local marking = ARGV[4]
local cur = redis.call('HGET', idx, 'v')
local force = version < 0
if force then version = -version - 1 end
if not force and cur and tonumber(cur) > version then return 0 end
if n == 0 and not cur and #ARGV == 4 then return 1 end
local m = '{"verify":true'
local function marked(v)
  local c = string.sub(v, #m + 1, #m + 1)
  return string.sub(v, 1, #m) == m and (c == ',' or c == '}')
end
local keep = {}
for i = 0, n - 1 do keep[ARGV[5 + 3*i]] = true end
for _, f in ipairs(redis.call('HKEYS', idx)) do
  if string.sub(f, 1, 2) == 't:' then
    local h = string.sub(f, 3)
    if not keep[h] then
      redis.call('DEL', prefix .. h)
      redis.call('HDEL', idx, f)
    end
  end
end
for i = 5 + 3*n, #ARGV do
  if not keep[ARGV[i]] then redis.call('DEL', prefix .. ARGV[i]) end
end
for i = 0, n - 1 do
  local h, ttl, v = ARGV[5 + 3*i], tonumber(ARGV[6 + 3*i]), ARGV[7 + 3*i]
  local mark = marking == '2'
  if marking == '1' then
    local old = redis.pcall('GET', prefix .. h)
    mark = type(old) ~= 'string' or marked(old)
  end
  if mark and string.sub(v, 1, 1) == '{' and not marked(v) then
    if v == '{}' then v = m .. '}' else v = m .. ',' .. string.sub(v, 2) end
  end
  if ttl > 0 then
    redis.call('SET', prefix .. h, v, 'PX', ttl)
  else
    redis.call('SET', prefix .. h, v)
  end
  redis.call('HSET', idx, 't:' .. h, '1')
end
if not force then
  redis.call('HSET', idx, 'v', ARGV[1])
elseif not (cur and tonumber(cur) > version) then
  redis.call('HSET', idx, 'v', string.format('%d', version))
end
return 1
`)

// Marking says how WriteUserTokens marks the token keys it writes with
// VerifyMarker.
type Marking int

const (
	// MarkNone writes every key unmarked: valid by its presence alone
	// (change-stream mode, which sees every removal).
	MarkNone Marking = iota
	// MarkNew (poll mode) keeps the state of a key that exists: unmarked
	// stays unmarked, marked stays marked; a new key is marked.
	MarkNew
	// MarkAll marks every key written (poll mode's initial sync and
	// resyncs).
	MarkAll
)

// WriteUserTokens makes each user's token keys exactly the given set, one
// atomic script per user, pipelined in batches. It returns how many users
// were applied; the others had a newer version in Redis already.
func (w *Writer) WriteUserTokens(ctx context.Context, users []UserTokens) (applied int, err error) {
	for len(users) > 0 {
		n := min(len(users), w.batch)
		a, err := w.writeUserTokens(ctx, users[:n])
		if err != nil {
			return applied, err
		}
		applied += a
		users = users[n:]
	}
	return applied, nil
}

func (w *Writer) writeUserTokens(ctx context.Context, users []UserTokens) (int, error) {
	run := func() ([]*redis.Cmd, error) {
		cmds := make([]*redis.Cmd, len(users))
		_, err := w.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, u := range users {
				args := make([]any, 0, 4+3*len(u.Tokens)+len(u.Stale))
				version := u.Version
				if u.Force {
					version = -version - 1 // negative: apply whatever the index holds
				}
				marking := MarkNone
				switch {
				case w.mark.Load() && u.MarkAll:
					marking = MarkAll
				case w.mark.Load():
					marking = MarkNew
				}
				args = append(args, version, w.keys.TokenKey(u.UserID, ""), len(u.Tokens), int(marking))
				for _, t := range u.Tokens {
					ttl := t.TTL.Milliseconds()
					if t.TTL > 0 && ttl == 0 {
						ttl = 1 // 0 would mean "never expires"
					}
					args = append(args, t.Hash, ttl, t.Value)
				}
				for _, h := range u.Stale {
					args = append(args, h)
				}
				cmds[i] = syncTokensScript.EvalSha(ctx, p, []string{w.indexKey(u.UserID)}, args...)
			}
			return nil
		})
		return cmds, err
	}
	cmds, err := run()
	if err != nil && isNoScript(err) {
		// A restarted or new Redis node lost the script cache: load it
		// everywhere and replay the batch, which is idempotent.
		if err := w.loadScripts(ctx); err != nil {
			return 0, err
		}
		cmds, err = run()
	}
	if err != nil {
		return 0, fmt.Errorf("write user tokens: %w", err)
	}
	applied := 0
	for _, c := range cmds {
		if v, _ := c.Int(); v == 1 {
			applied++
		}
	}
	return applied, nil
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// loadScripts loads the Writer's scripts; on a Cluster client go-redis
// sends SCRIPT LOAD to every master.
func (w *Writer) loadScripts(ctx context.Context) error {
	for _, s := range []*redis.Script{syncTokensScript, casScript, casIndexScript, markScript} {
		if err := s.Load(ctx, w.client).Err(); err != nil {
			return fmt.Errorf("load script: %w", err)
		}
	}
	return nil
}

func (w *Writer) indexKey(userID string) string {
	return w.keys.Prefix + "{" + userID + "}" + tokenIndexSuffix
}

// KeyKind tells what a key found by ScanKeys is.
type KeyKind int

// Kinds of keys under the prefix.
const (
	KindToken      KeyKind = iota + 1 // <p>{<userId>}:token:<hashedToken>
	KindSession                       // <p>{<userId>}:session:<sessionId>
	KindTokenIndex                    // <p>{<userId>}:mirror
)

// KeyRef is one user key found by ScanKeys.
type KeyRef struct {
	Kind   KeyKind
	Key    string
	UserID string
	// ID is the hashed token or the session id; empty for an index.
	ID string
}

// ScanKeys lists every user key under the prefix with SCAN (on every master
// of a Cluster), calling fn with batches of at most the batch size. Keys
// added or removed during the scan may or may not be listed (SCAN's
// guarantee); keys of other shapes are skipped. fn must not keep the slice.
func (w *Writer) ScanKeys(ctx context.Context, fn func([]KeyRef) error) error {
	if cc, ok := w.client.(*redis.ClusterClient); ok {
		// ForEachMaster runs one goroutine per master: serialise fn.
		var mu sync.Mutex
		locked := func(refs []KeyRef) error {
			mu.Lock()
			defer mu.Unlock()
			return fn(refs)
		}
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
			return w.scan(ctx, c, locked)
		})
	}
	return w.scan(ctx, w.client, fn)
}

func (w *Writer) scan(ctx context.Context, c redis.Cmdable, fn func([]KeyRef) error) error {
	match := globEscape(w.keys.Prefix) + "{*}:*"
	refs := make([]KeyRef, 0, w.batch)
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, match, int64(w.batch)).Result()
		if err != nil {
			return fmt.Errorf("scan keys: %w", err)
		}
		for _, k := range keys {
			if ref, ok := w.parseKey(k); ok {
				refs = append(refs, ref)
			}
			if len(refs) == w.batch {
				if err := fn(refs); err != nil {
					return err
				}
				refs = refs[:0]
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	if len(refs) > 0 {
		return fn(refs)
	}
	return nil
}

func (w *Writer) parseKey(key string) (KeyRef, bool) {
	rest, ok := strings.CutPrefix(key, w.keys.Prefix+"{")
	if !ok {
		return KeyRef{}, false
	}
	userID, rest, ok := strings.Cut(rest, "}")
	if !ok || userID == "" {
		return KeyRef{}, false
	}
	switch {
	case rest == tokenIndexSuffix:
		return KeyRef{Kind: KindTokenIndex, Key: key, UserID: userID}, true
	case strings.HasPrefix(rest, ":token:"):
		return KeyRef{Kind: KindToken, Key: key, UserID: userID, ID: rest[len(":token:"):]}, true
	case strings.HasPrefix(rest, ":session:"):
		return KeyRef{Kind: KindSession, Key: key, UserID: userID, ID: rest[len(":session:"):]}, true
	}
	return KeyRef{}, false
}

// globEscape quotes SCAN MATCH's special characters.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Values returns the current value of each string key (nil when missing),
// in order, pipelined. For an index key it returns its version field.
func (w *Writer) Values(ctx context.Context, refs []KeyRef) ([][]byte, error) {
	out := make([][]byte, len(refs))
	for start := 0; start < len(refs); start += w.batch {
		part := refs[start:min(len(refs), start+w.batch)]
		cmds := make([]*redis.StringCmd, len(part))
		_, err := w.client.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, r := range part {
				if r.Kind == KindTokenIndex {
					cmds[i] = p.HGet(ctx, r.Key, "v")
				} else {
					cmds[i] = p.Get(ctx, r.Key)
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("read values: %w", err)
		}
		for i, c := range cmds {
			b, err := c.Bytes()
			switch {
			case errors.Is(err, redis.Nil):
			case err != nil:
				return nil, fmt.Errorf("read values: %w", err)
			default:
				out[start+i] = b
			}
		}
	}
	return out, nil
}

// casScript replaces or deletes a string key only if it still holds the
// value the caller read: a reconciler that read MongoDB before a fresh write
// never undoes it. ARGV: expected value, new value or "" to delete.
var casScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
return 1
`)

// casIndexScript deletes a user's token index only if its version is still
// the one the caller read.
var casIndexScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'v') ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
return 1
`)

// Swap is one compare-and-swap of ReplaceIfEqual.
type Swap struct {
	Ref KeyRef
	// Old is the value read by Values; nil means the key was missing, and
	// the swap is skipped.
	Old []byte
	// New replaces Old; nil deletes the key. Index keys can only be
	// deleted.
	New []byte
}

// ReplaceIfEqual applies each swap only where the key still holds Old, and
// returns how many were applied.
func (w *Writer) ReplaceIfEqual(ctx context.Context, swaps []Swap) (int, error) {
	applied := 0
	for start := 0; start < len(swaps); start += w.batch {
		part := swaps[start:min(len(swaps), start+w.batch)]
		run := func() ([]*redis.Cmd, error) {
			cmds := make([]*redis.Cmd, 0, len(part))
			_, err := w.client.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, s := range part {
					if s.Old == nil {
						continue
					}
					if s.Ref.Kind == KindTokenIndex {
						cmds = append(cmds, casIndexScript.EvalSha(ctx, p, []string{s.Ref.Key}, s.Old))
					} else {
						cmds = append(cmds, casScript.EvalSha(ctx, p, []string{s.Ref.Key}, s.Old, s.New))
					}
				}
				return nil
			})
			return cmds, err
		}
		cmds, err := run()
		if isNoScript(err) {
			if err := w.loadScripts(ctx); err != nil {
				return applied, err
			}
			cmds, err = run()
		}
		if err != nil {
			return applied, fmt.Errorf("compare and swap: %w", err)
		}
		for _, c := range cmds {
			if v, _ := c.Int(); v == 1 {
				applied++
			}
		}
	}
	return applied, nil
}

// Checkpoint is where the mirror resumes after a restart.
type Checkpoint struct {
	// Database is the MongoDB database the checkpoint belongs to.
	Database string
	// Users and Sessions are the high-water marks of _updatedAt read from
	// each collection, with everything up to them written to Redis.
	Users, Sessions time.Time
	// LoginExpiration is the Accounts_LoginExpiration the token expiries
	// were computed with.
	LoginExpiration time.Duration
	// ResumeToken is the change stream's resume token (raw BSON) up to
	// which every event was applied; nil in poll mode.
	ResumeToken []byte
	// Trash is the high-water mark of _deletedAt read from
	// rocketchat__trash (deleted users); zero in checkpoints of older
	// versions.
	Trash time.Time
	// Marked: the token keys were written by poll mode, marked unless
	// re-checked (VerifyMarker); false after a change-stream run or an
	// older version.
	Marked bool
}

// LoadCheckpoint returns the stored checkpoint, or ErrNoCheckpoint.
func (w *Writer) LoadCheckpoint(ctx context.Context) (Checkpoint, error) {
	m, err := w.client.HGetAll(ctx, w.keys.Prefix+checkpointName).Result()
	if err != nil {
		return Checkpoint{}, fmt.Errorf("read checkpoint: %w", err)
	}
	if len(m) == 0 || m["format"] != "1" {
		return Checkpoint{}, ErrNoCheckpoint
	}
	users, err1 := strconv.ParseInt(m["users"], 10, 64)
	sessions, err2 := strconv.ParseInt(m["sessions"], 10, 64)
	exp, err3 := strconv.ParseInt(m["login_expiration_ms"], 10, 64)
	if err := errors.Join(err1, err2, err3); err != nil {
		// A damaged checkpoint only costs a full sync.
		return Checkpoint{}, ErrNoCheckpoint
	}
	cp := Checkpoint{
		Database:        m["database"],
		Users:           time.UnixMilli(users),
		Sessions:        time.UnixMilli(sessions),
		LoginExpiration: time.Duration(exp) * time.Millisecond,
	}
	if trash, err := strconv.ParseInt(m["trash"], 10, 64); err == nil {
		cp.Trash = time.UnixMilli(trash)
	}
	cp.Marked = m["marked"] == "1"
	if tok, err := base64.StdEncoding.DecodeString(m["resume_token"]); err == nil && len(tok) > 0 {
		cp.ResumeToken = tok
	}
	return cp, nil
}

// SaveCheckpoint stores cp.
func (w *Writer) SaveCheckpoint(ctx context.Context, cp Checkpoint) error {
	marked := "0"
	if cp.Marked {
		marked = "1"
	}
	err := w.client.HSet(ctx, w.keys.Prefix+checkpointName,
		"format", "1",
		"database", cp.Database,
		"users", cp.Users.UnixMilli(),
		"sessions", cp.Sessions.UnixMilli(),
		"login_expiration_ms", cp.LoginExpiration.Milliseconds(),
		"trash", cp.Trash.UnixMilli(),
		"resume_token", base64.StdEncoding.EncodeToString(cp.ResumeToken),
		"marked", marked,
	).Err()
	if err != nil {
		return fmt.Errorf("save checkpoint: %w", err)
	}
	return nil
}

// SetHeartbeat records that Redis was in step with MongoDB as of t; see
// MirrorHeartbeat. A heartbeat never moves backwards, so the slower of two
// mirrors cannot make the data look older than it is.
func (w *Writer) SetHeartbeat(ctx context.Context, t time.Time) error {
	if err := heartbeatScript.Run(ctx, w.client, []string{w.keys.Prefix + heartbeatName}, t.UnixMilli()).Err(); err != nil {
		return fmt.Errorf("set heartbeat: %w", err)
	}
	return nil
}

var heartbeatScript = redis.NewScript(`
local cur = tonumber(redis.call('GET', KEYS[1]) or '0')
if cur and cur >= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], ARGV[1])
return 1
`)
