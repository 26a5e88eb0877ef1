package mirror

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/redisstore"
)

// sessionPair identifies what sessions/info looks up: one session of one
// user.
type sessionPair struct {
	userID, sessionID string
}

// servable is the part of Rocket.Chat's query that does not depend on the
// request (SessionsRaw.findOneBySessionIdAndUserId): a session is served
// only while its loginToken exists and is not empty.
func servable() bson.D {
	return bson.D{{Key: "loginToken", Value: bson.D{
		{Key: "$exists", Value: true},
		{Key: "$ne", Value: ""},
	}}}
}

// pairOf returns the pair a session document answers for.
func pairOf(raw bson.Raw) (sessionPair, bool) {
	sessionID, ok1 := raw.Lookup("sessionId").StringValueOK()
	userID, ok2 := raw.Lookup("userId").StringValueOK()
	if !ok1 || !ok2 || !validID(sessionID) || !validID(userID) {
		return sessionPair{}, false
	}
	return sessionPair{userID: userID, sessionID: sessionID}, true
}

// renderSession returns the session document in its REST form (docs/data-contract.md).
// It decodes into bson.D so the members keep their stored order.
func renderSession(raw bson.Raw) ([]byte, error) {
	var doc bson.D
	if err := bson.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("decode session: %w", err)
	}
	return appendREST(make([]byte, 0, len(raw)), doc), nil
}

// winners returns, for each pair, the rendered document sessions/info
// serves, or no entry when none qualifies. Where several documents share a
// pair, the one with the smallest _id wins: the first in _id order, which
// is what Rocket.Chat's unsorted findOne returns on a collection that was
// only ever appended to. Deciding it here keeps every mirror's answer the
// same whatever order MongoDB returns.
func winners(ctx context.Context, coll *mongo.Collection, pairs []sessionPair) (map[sessionPair][]byte, error) {
	want := make(map[sessionPair]bool, len(pairs))
	ids := make(bson.A, 0, len(pairs))
	seen := make(map[string]bool, len(pairs))
	for _, p := range pairs {
		want[p] = true
		if !seen[p.sessionID] {
			seen[p.sessionID] = true
			ids = append(ids, p.sessionID)
		}
	}
	filter := append(bson.D{{Key: "sessionId", Value: bson.D{{Key: "$in", Value: ids}}}}, servable()...)
	cur, err := coll.Find(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("find sessions: %w", err)
	}
	defer cur.Close(ctx)
	best := make(map[sessionPair]bson.Raw, len(pairs))
	for cur.Next(ctx) {
		p, ok := pairOf(cur.Current)
		if !ok || !want[p] {
			continue
		}
		if b, ok := best[p]; ok && compareIDs(cur.Current.Lookup("_id"), b.Lookup("_id")) >= 0 {
			continue
		}
		best[p] = bytes.Clone(cur.Current)
	}
	if err := cur.Err(); err != nil {
		return nil, fmt.Errorf("find sessions: %w", err)
	}
	out := make(map[sessionPair][]byte, len(best))
	for p, raw := range best {
		v, err := renderSession(raw)
		if err != nil {
			return nil, err
		}
		out[p] = v
	}
	return out, nil
}

// compareIDs orders two _id values as MongoDB sorts them: by BSON type
// class first, then by value (strings and ObjectIds bytewise).
func compareIDs(a, b bson.RawValue) int {
	if ca, cb := typeClass(a.Type), typeClass(b.Type); ca != cb {
		return ca - cb
	}
	switch a.Type {
	case bson.TypeString:
		if b.Type == bson.TypeString {
			return bytes.Compare([]byte(a.StringValue()), []byte(b.StringValue()))
		}
	case bson.TypeObjectID:
		oa, ob := a.ObjectID(), b.ObjectID()
		return bytes.Compare(oa[:], ob[:])
	case bson.TypeDouble, bson.TypeInt32, bson.TypeInt64:
		fa, _ := a.AsFloat64OK()
		fb, _ := b.AsFloat64OK()
		switch {
		case fa < fb:
			return -1
		case fa > fb:
			return 1
		}
		return 0
	}
	return bytes.Compare(a.Value, b.Value)
}

// typeClass is the BSON comparison order of a type
// (https://www.mongodb.com/docs/manual/reference/bson-type-comparison-order/).
func typeClass(t bson.Type) int {
	switch t {
	case bson.TypeMinKey:
		return 0
	case bson.TypeNull, bson.TypeUndefined:
		return 1
	case bson.TypeDouble, bson.TypeInt32, bson.TypeInt64, bson.TypeDecimal128:
		return 2
	case bson.TypeString, bson.TypeSymbol:
		return 3
	case bson.TypeEmbeddedDocument:
		return 4
	case bson.TypeArray:
		return 5
	case bson.TypeBinary:
		return 6
	case bson.TypeObjectID:
		return 7
	case bson.TypeBoolean:
		return 8
	case bson.TypeDateTime:
		return 9
	case bson.TypeTimestamp:
		return 10
	case bson.TypeRegex:
		return 11
	case bson.TypeMaxKey:
		return 13
	}
	return 12
}

// syncSessions writes every servable session. It reads in natural order,
// which needs no sort or index and streams from the first document, and
// remembers the smallest _id written per pair (a 16-byte digest of the pair
// and the id: about 80 bytes per session), so a duplicate with a smaller
// _id read later overwrites the key and one with a larger _id is skipped.
func (m *mirror) syncSessions(ctx context.Context) (int, error) {
	coll := m.db.Collection("rocketchat_sessions")
	prog := m.newProgress(ctx, coll)
	cur, err := coll.Find(ctx, servable(), options.Find().SetBatchSize(int32(m.cfg.BatchSize)))
	if err != nil {
		return 0, fmt.Errorf("find sessions: %w", err)
	}
	defer cur.Close(ctx)
	best := make(map[[16]byte]idRank)
	writes := make([]redisstore.SessionWrite, 0, m.cfg.BatchSize)
	written := 0
	flush := func() error {
		if err := m.w.WriteSessions(ctx, writes); err != nil {
			return err
		}
		written += len(writes)
		writes = writes[:0]
		return nil
	}
	for cur.Next(ctx) {
		prog.add(1)
		p, ok := pairOf(cur.Current)
		if !ok {
			continue
		}
		h, id := pairDigest(p), cur.Current.Lookup("_id")
		if r, dup := best[h]; dup && compareIDs(id, r.rawValue()) >= 0 {
			continue
		}
		v, err := renderSession(cur.Current)
		if err != nil {
			m.log.Warn("session skipped", zap.Error(err))
			continue
		}
		best[h] = idRank{typ: id.Type, value: string(id.Value)}
		writes = append(writes, redisstore.SessionWrite{UserID: p.userID, SessionID: p.sessionID, Value: v})
		if len(writes) == m.cfg.BatchSize {
			if err := flush(); err != nil {
				return written, err
			}
		}
	}
	if err := cur.Err(); err != nil {
		return written, fmt.Errorf("find sessions: %w", err)
	}
	if err := flush(); err != nil {
		return written, err
	}
	prog.done()
	return written, nil
}

// idRank is a copy of an _id, kept to compare later duplicates with.
type idRank struct {
	typ   bson.Type
	value string
}

func (r idRank) rawValue() bson.RawValue {
	return bson.RawValue{Type: r.typ, Value: []byte(r.value)}
}

func pairDigest(p sessionPair) [16]byte {
	h := sha256.New()
	h.Write([]byte(p.userID))
	h.Write([]byte{0})
	h.Write([]byte(p.sessionID))
	var d [16]byte
	copy(d[:], h.Sum(nil))
	return d
}

// pollSessions re-reads the sessions changed since from (minus the
// overlap), and rewrites or deletes the key of every pair they touch. It
// returns the largest _updatedAt seen, or from when none.
func (m *mirror) pollSessions(ctx context.Context, from time.Time) (time.Time, int, error) {
	coll := m.db.Collection("rocketchat_sessions")
	cur, err := coll.Find(ctx, changedSince(from.Add(-m.cfg.Overlap)), options.Find().
		SetProjection(bson.D{{Key: "sessionId", Value: 1}, {Key: "userId", Value: 1}, {Key: "_updatedAt", Value: 1}}).
		SetBatchSize(int32(m.cfg.BatchSize)))
	if err != nil {
		return from, 0, fmt.Errorf("poll sessions: %w", err)
	}
	defer cur.Close(ctx)
	high := from
	var pairs []sessionPair
	seen := make(map[sessionPair]bool)
	for cur.Next(ctx) {
		if v := time.UnixMilli(version(cur.Current)); v.After(high) {
			high = v
		}
		if p, ok := pairOf(cur.Current); ok && !seen[p] {
			seen[p] = true
			pairs = append(pairs, p)
		}
	}
	if err := cur.Err(); err != nil {
		return from, 0, fmt.Errorf("poll sessions: %w", err)
	}
	for start := 0; start < len(pairs); start += m.cfg.BatchSize {
		part := pairs[start:min(len(pairs), start+m.cfg.BatchSize)]
		win, err := winners(ctx, coll, part)
		if err != nil {
			return from, 0, err
		}
		writes := make([]redisstore.SessionWrite, len(part))
		for i, p := range part {
			// No winner left (loginToken removed): the key goes.
			writes[i] = redisstore.SessionWrite{UserID: p.userID, SessionID: p.sessionID, Value: win[p]}
		}
		if err := m.w.WriteSessions(ctx, writes); err != nil {
			return from, 0, err
		}
	}
	return high, len(pairs), nil
}

// changedSince matches documents whose _updatedAt is t or later: equal
// timestamps are read again, never skipped.
func changedSince(t time.Time) bson.D {
	return bson.D{{Key: "_updatedAt", Value: bson.D{{Key: "$gte", Value: bson.NewDateTimeFromTime(t)}}}}
}
