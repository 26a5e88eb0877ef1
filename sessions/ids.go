package sessions

import "bytes"

// maxIDLen bounds user and session ids. Rocket.Chat's are 17-character
// Meteor ids (24-hex ObjectIds for some imported users), far below it.
const maxIDLen = 256

// validID reports whether id can be a real user or session id (docs/route.md):
// not empty after trimming white space, at most 256 bytes, no '{' or '}'
// (they would move the Redis Cluster hash tag of the key, docs/data-contract.md) and no
// control characters (C0, DEL, and C1 as UTF-8). An id that cannot be real
// never reaches Redis.
func validID(id []byte) bool {
	if len(id) > maxIDLen || len(bytes.TrimSpace(id)) == 0 {
		return false
	}
	for i, c := range id {
		switch {
		case c < 0x20, c == 0x7f, c == '{', c == '}':
			return false
		case c == 0xc2 && i+1 < len(id) && id[i+1] >= 0x80 && id[i+1] <= 0x9f:
			return false // U+0080–U+009F
		}
	}
	return true
}
