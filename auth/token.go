// Package auth answers "is this login token valid for this user" the way
// Rocket.Chat does: by hashing the token exactly like Meteor and looking the
// hash up, never by comparing secrets by hand.
package auth

import (
	"crypto/sha256"
	"encoding/base64"
	"errors"
)

// HashedTokenLen is the length of a hashed login token: 32 bytes of SHA-256
// in standard base64 with padding.
const HashedTokenLen = 44

// ErrInvalidToken means no valid login token with this hash exists for the
// user: the request is not authenticated (docs/route.md, 401). It is not a storage
// failure; stores report those as other errors.
var ErrInvalidToken = errors.New("auth: invalid token")

// HashToken returns the hashed form of a login token, the value Rocket.Chat
// keeps in users.services.resume.loginTokens.hashedToken and the data
// contract puts in token keys (docs/data-contract.md).
//
// Rocket.Chat hashes like Meteor's Accounts._hashLoginToken:
// crypto.createHash('sha256').update(token).digest('base64'), that is
// SHA-256 of the token's UTF-8 bytes in standard base64 with '=' padding.
func HashToken(token string) string {
	var buf [HashedTokenLen]byte
	return string(AppendHashedToken(buf[:0], []byte(token)))
}

// AppendHashedToken appends the hashed form of token (see HashToken) to dst
// and returns the extended slice. It does not allocate when dst has
// HashedTokenLen bytes of spare capacity; it does not keep token or dst.
func AppendHashedToken(dst, token []byte) []byte {
	sum := sha256.Sum256(token)
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}
