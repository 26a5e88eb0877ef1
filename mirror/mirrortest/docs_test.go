package mirrortest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"regexp"
	"testing"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"

	"github.com/sessiongate/sessiongate/redisstore"
)

// hashToken hashes a login token the way Meteor's
// Accounts._hashLoginToken does.
func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// loginToken is a users.services.resume.loginTokens entry of a normal login.
func loginToken(token string, when time.Time) bson.D {
	return bson.D{{Key: "when", Value: bson.NewDateTimeFromTime(when)}, {Key: "hashedToken", Value: hashToken(token)}}
}

// patToken is a personal access token entry as Rocket.Chat writes it
// (server/lib/... generatePersonalAccessToken): no "when".
func patToken(token string, created time.Time) bson.D {
	return bson.D{
		{Key: "hashedToken", Value: hashToken(token)},
		{Key: "type", Value: "personalAccessToken"},
		{Key: "createdAt", Value: bson.NewDateTimeFromTime(created)},
		{Key: "lastTokenPart", Value: token[len(token)-6:]},
		{Key: "name", Value: "ci"},
		{Key: "bypassTwoFactor", Value: false},
	}
}

// userDoc is a users document with the given login tokens.
func userDoc(id string, updated time.Time, tokens ...bson.D) bson.D {
	list := bson.A{}
	for _, t := range tokens {
		list = append(list, t)
	}
	return bson.D{
		{Key: "_id", Value: id},
		{Key: "createdAt", Value: bson.NewDateTimeFromTime(updated.Add(-time.Hour))},
		{Key: "services", Value: bson.D{{Key: "resume", Value: bson.D{{Key: "loginTokens", Value: list}}}}},
		{Key: "username", Value: "user-" + id},
		{Key: "active", Value: true},
		{Key: "_updatedAt", Value: bson.NewDateTimeFromTime(updated)},
	}
}

// sessionDoc is a rocketchat_sessions document of the usual shape.
func sessionDoc(id bson.ObjectID, userID, sessionID, loginTokenHash string, updated time.Time) bson.D {
	return bson.D{
		{Key: "_id", Value: id},
		{Key: "type", Value: "session"},
		{Key: "sessionId", Value: sessionID},
		{Key: "instanceId", Value: "f0313fa9-ebe6-4a84-8580-3104f6a09988"},
		{Key: "loginToken", Value: loginTokenHash},
		{Key: "ip", Value: "172.20.0.2"},
		{Key: "userId", Value: userID},
		{Key: "loginAt", Value: bson.NewDateTimeFromTime(updated)},
		{Key: "day", Value: int32(updated.Day())},
		{Key: "createdAt", Value: bson.NewDateTimeFromTime(updated)},
		{Key: "_updatedAt", Value: bson.NewDateTimeFromTime(updated)},
	}
}

func (e *env) insert(t testing.TB, collection string, docs ...bson.D) {
	t.Helper()
	many := make([]any, len(docs))
	for i, d := range docs {
		many[i] = d
	}
	if _, err := e.db.Collection(collection).InsertMany(context.Background(), many); err != nil {
		t.Fatalf("insert into %s: %v", collection, err)
	}
}

func (e *env) set(t testing.TB, collection string, id any, fields bson.D) {
	t.Helper()
	_, err := e.db.Collection(collection).UpdateOne(context.Background(),
		bson.D{{Key: "_id", Value: id}}, bson.D{{Key: "$set", Value: fields}})
	if err != nil {
		t.Fatalf("update %s %v: %v", collection, id, err)
	}
}

func (e *env) remove(t testing.TB, collection string, id any) {
	t.Helper()
	if _, err := e.db.Collection(collection).DeleteOne(context.Background(), bson.D{{Key: "_id", Value: id}}); err != nil {
		t.Fatalf("delete %s %v: %v", collection, id, err)
	}
}

// waitHeartbeat waits for the mirror under prefix to finish its initial
// sync (its first heartbeat) and returns the heartbeat.
func (e *env) waitHeartbeat(t testing.TB, prefix string, after time.Time) time.Time {
	t.Helper()
	return e.waitHeartbeatFor(t, prefix, after, time.Minute)
}

func (e *env) waitHeartbeatFor(t testing.TB, prefix string, after time.Time, timeout time.Duration) time.Time {
	t.Helper()
	var hb time.Time
	eventually(t, timeout, "mirror heartbeat", func() bool {
		var err error
		hb, err = redisstore.MirrorHeartbeat(context.Background(), e.redis, prefix)
		return err == nil && !hb.Before(after)
	})
	return hb
}

var isoDate = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)

// bsonFromREST turns a session in its REST form back into the document
// MongoDB holds: members in order, ISO dates as dates, a 24-hex _id as an
// ObjectId, integral numbers as int32.
func bsonFromREST(t testing.TB, data []byte) bson.D {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeOrdered(dec, "")
	if err != nil {
		t.Fatalf("decode golden: %v", err)
	}
	return v.(bson.D)
}

func decodeOrdered(dec *json.Decoder, key string) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch tok := tok.(type) {
	case json.Delim:
		if tok == '[' {
			arr := bson.A{}
			for dec.More() {
				v, err := decodeOrdered(dec, "")
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			_, err := dec.Token()
			return arr, err
		}
		doc := bson.D{}
		for dec.More() {
			k, err := dec.Token()
			if err != nil {
				return nil, err
			}
			v, err := decodeOrdered(dec, k.(string))
			if err != nil {
				return nil, err
			}
			doc = append(doc, bson.E{Key: k.(string), Value: v})
		}
		_, err := dec.Token()
		return doc, err
	case string:
		if isoDate.MatchString(tok) {
			d, err := time.Parse(time.RFC3339Nano, tok)
			return bson.NewDateTimeFromTime(d), err
		}
		if key == "_id" {
			if oid, err := bson.ObjectIDFromHex(tok); err == nil {
				return oid, nil
			}
		}
		return tok, nil
	case json.Number:
		if i, err := tok.Int64(); err == nil {
			return int32(i), nil
		}
		return tok.Float64()
	default:
		return tok, nil // bool, nil
	}
}
