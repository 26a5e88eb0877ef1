package sessions

import (
	"errors"

	"github.com/sessiongate/sessiongate/auth"
)

// Activity is told of each token the route looked up: kind is 'h' when
// the token was valid (the answer was 200 or 404), 'm' when it was not
// (401). It must return at once and not keep the slices; the mirror uses
// these reports to re-check recently used tokens against MongoDB
// (redisstore.ActivityReporter implements it).
type Activity func(kind byte, userID, hashedToken []byte)

// report passes the outcome of a Store call to the Activity hook; Store
// failures say nothing about the token and are not reported.
func (h *Handler) report(err error, userID, hash []byte) {
	if h.activity == nil {
		return
	}
	switch {
	case err == nil || errors.Is(err, ErrNotFound):
		h.activity('h', userID, hash)
	case errors.Is(err, auth.ErrInvalidToken):
		h.activity('m', userID, hash)
	}
}
