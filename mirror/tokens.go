package mirror

import (
	"context"
	"errors"
	"fmt"
	"math"
	"time"

	"go.mongodb.org/mongo-driver/v2/bson"
	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.mongodb.org/mongo-driver/v2/mongo/options"

	"github.com/sessiongate/sessiongate/redisstore"
)

// defaultLoginExpiration is Rocket.Chat's DEFAULT_LOGIN_EXPIRATION (90 days),
// used when Accounts_LoginExpiration is missing, not a number or not
// positive (apps/meteor/app/utils/lib/getLoginExpiration.ts).
const defaultLoginExpiration = 90 * 24 * time.Hour

// personalAccessToken is the loginTokens[].type of a personal access token:
// it has no "when" and never expires.
const personalAccessToken = "personalAccessToken"

// userProjection reads only what the token keys need.
func userProjection() bson.D {
	return bson.D{{Key: "services.resume.loginTokens", Value: 1}, {Key: "_updatedAt", Value: 1}}
}

// loginExpiration reads Accounts_LoginExpiration (days) from
// rocketchat_settings.
func loginExpiration(ctx context.Context, db *mongo.Database) (time.Duration, error) {
	raw, err := db.Collection("rocketchat_settings").FindOne(ctx,
		bson.D{{Key: "_id", Value: "Accounts_LoginExpiration"}},
		options.FindOne().SetProjection(bson.D{{Key: "value", Value: 1}}),
	).Raw()
	if errors.Is(err, mongo.ErrNoDocuments) {
		return defaultLoginExpiration, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read Accounts_LoginExpiration: %w", err)
	}
	return loginExpirationOf(raw.Lookup("value")), nil
}

// loginExpirationOf converts the setting's value in days, the way
// Rocket.Chat's getLoginExpirationInDays does: a positive number, else 90.
func loginExpirationOf(v bson.RawValue) time.Duration {
	days, ok := v.AsFloat64OK()
	if !ok || math.IsNaN(days) || days <= 0 || days > 1e6 {
		return defaultLoginExpiration
	}
	return time.Duration(days * float64(24*time.Hour))
}

// userTokens returns the token set of one users document as of now, and
// whether the document's _id is usable as a user id. Tokens without a
// hashedToken (Meteor before 0.7 stored plain ones) and expired tokens are
// left out; a token expires at when + expiration, and one without "when"
// (personal access tokens) never does, as in Meteor's
// Accounts._expireTokens.
func userTokens(raw bson.Raw, expiration time.Duration, now time.Time) (redisstore.UserTokens, bool) {
	userID, ok := idString(raw.Lookup("_id"))
	if !ok {
		return redisstore.UserTokens{}, false
	}
	u := redisstore.UserTokens{UserID: userID, Version: version(raw)}
	arr, ok := raw.Lookup("services", "resume", "loginTokens").ArrayOK()
	if !ok {
		return u, true
	}
	values, err := arr.Values()
	if err != nil {
		return u, true
	}
	for _, v := range values {
		doc, ok := v.DocumentOK()
		if !ok {
			continue
		}
		hash, ok := doc.Lookup("hashedToken").StringValueOK()
		if !ok || !validID(hash) {
			continue
		}
		t := redisstore.Token{Hash: hash}
		typ, _ := doc.Lookup("type").StringValueOK()
		when, hasWhen := doc.Lookup("when").DateTimeOK()
		switch {
		case typ == personalAccessToken:
			t.Value = []byte(`{"type":"personalAccessToken"}`)
		case hasWhen:
			t.TTL = time.UnixMilli(when).Add(expiration).Sub(now)
			if t.TTL <= 0 {
				continue
			}
			t.Value = appendJSDate([]byte(`{"when":`), when)
			t.Value = append(t.Value, '}')
		default:
			t.Value = []byte(`{}`)
		}
		u.Tokens = append(u.Tokens, t)
	}
	return u, true
}

// version is a document's _updatedAt in Unix milliseconds, 0 when missing.
func version(raw bson.Raw) int64 {
	ms, _ := raw.Lookup("_updatedAt").DateTimeOK()
	return ms
}

// idString returns an id as the proxy sees it: a string, or an ObjectId's
// hex form. Ids the proxy rejects (docs/route.md) are not usable.
func idString(v bson.RawValue) (string, bool) {
	var s string
	switch v.Type {
	case bson.TypeString:
		s = v.StringValue()
	case bson.TypeObjectID:
		s = v.ObjectID().Hex()
	default:
		return "", false
	}
	return s, validID(s)
}

// validID reports whether id can be part of a key: non-empty, at most 256
// bytes, no '{', '}' or control characters (docs/route.md). The proxy never
// looks up other ids, and a brace would move the key's hash tag.
func validID(id string) bool {
	if id == "" || len(id) > 256 {
		return false
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x20 || c == 0x7f || c == '{' || c == '}' {
			return false
		}
	}
	return true
}

// userIDFilter matches users by the ids found in Redis keys; a 24-hex id
// may be an ObjectId in MongoDB.
func userIDFilter(userIDs []string) bson.D {
	in := make(bson.A, 0, len(userIDs))
	for _, id := range userIDs {
		in = append(in, id)
		if oid, err := bson.ObjectIDFromHex(id); err == nil {
			in = append(in, oid)
		}
	}
	return bson.D{{Key: "_id", Value: bson.D{{Key: "$in", Value: in}}}}
}
