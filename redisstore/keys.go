// Package redisstore is the only package that talks to Redis through
// go-redis: it owns the key layout of the data contract (docs/data-contract.md), the
// client for each topology, and the route's one-round-trip lookup.
package redisstore

// Keys builds the data-contract keys (version 1) for one key prefix. The
// user id sits in a hash tag so a user's token and session keys share one
// Redis Cluster slot and can be fetched in one round trip.
//
// Callers must reject ids containing '{' or '}' before building keys (the
// proxy does, docs/route.md): a brace would move the hash tag.
type Keys struct {
	// Prefix starts every key, e.g. "rc:".
	Prefix string
}

// TokenKey is <prefix>{<userID>}:token:<hashedToken>.
func (k Keys) TokenKey(userID, hashedToken string) string {
	return k.Prefix + "{" + userID + "}:token:" + hashedToken
}

// SessionKey is <prefix>{<userID>}:session:<sessionID>.
func (k Keys) SessionKey(userID, sessionID string) string {
	return k.Prefix + "{" + userID + "}:session:" + sessionID
}

// AppendTokenKey appends TokenKey to dst without allocating when dst has room.
func (k Keys) AppendTokenKey(dst []byte, userID, hashedToken []byte) []byte {
	dst = append(dst, k.Prefix...)
	dst = append(dst, '{')
	dst = append(dst, userID...)
	dst = append(dst, "}:token:"...)
	return append(dst, hashedToken...)
}

// AppendSessionKey appends SessionKey to dst without allocating when dst has room.
func (k Keys) AppendSessionKey(dst []byte, userID, sessionID []byte) []byte {
	dst = append(dst, k.Prefix...)
	dst = append(dst, '{')
	dst = append(dst, userID...)
	dst = append(dst, "}:session:"...)
	return append(dst, sessionID...)
}

// VerifyMarker, followed by ',' or '}', starts the value of a token key
// that is valid only as of its writer's last read of MongoDB: the proxy
// asks the mirror before serving it (docs/data-contract.md). A key whose
// value does not start so is valid by its presence alone.
const VerifyMarker = `{"verify":true`

// Marked reports whether a token key's value is marked (VerifyMarker).
func Marked(value string) bool {
	return len(value) > len(VerifyMarker) && markedHead(value[:len(VerifyMarker)+1])
}

// markedHead reports whether head, the first len(VerifyMarker)+1 bytes
// of a value, marks it.
func markedHead[S string | []byte](head S) bool {
	c := head[len(VerifyMarker)]
	return string(head[:len(VerifyMarker)]) == VerifyMarker && (c == ',' || c == '}')
}
