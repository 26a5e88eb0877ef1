package sessions

import (
	"fmt"
	"strconv"
	"strings"
)

// era is how one range of Rocket.Chat versions answers the route where the
// versions differ (docs/eras.md): the 401 body, the 400 bodies, and how the
// query gets from the request line to the validator.
type era struct {
	name         string
	unauthorized []byte
	invalid      [numQueryResults][]byte // by queryResult; nil for queryOK
	qs           qsOptions
}

// The eras, oldest first.
var (
	// eraRestivus is 5.0–7.3: the Restivus-style API on Meteor's webapp.
	eraRestivus = &era{
		name:         "5.0-7.3",
		unauthorized: bodyUnauthorizedClassic,
		invalid:      meteorInvalid(),
		qs:           qsMeteor,
	}
	// eraExtended401 is 7.4–7.5: the same, with the 401 body that repeats
	// its message under "success" and "error".
	eraExtended401 = &era{
		name:         "7.4-7.5",
		unauthorized: bodyUnauthorizedExtended,
		invalid:      meteorInvalid(),
		qs:           qsMeteor,
	}
	// eraRouter is 7.6–7.x: Rocket.Chat's own router (packages/http-router)
	// hands the query to qs 6.14 with limits that refuse; sessions/info is
	// still a legacy route whose validateParams throws a Meteor.Error.
	eraRouter = &era{
		name:         "7.6-7.x",
		unauthorized: bodyUnauthorizedExtended,
		invalid:      meteorInvalid(),
		qs:           qsRouter,
	}
	// eraTyped is 8.0 and later: the API's breaking changes
	// (shouldBreakInVersion('8.0.0') in ApiClass) drop the 401 body's
	// compatibility members, and the route is taken to be a typed one,
	// whose router words the 400 itself.
	eraTyped = &era{
		name:         "8.0+",
		unauthorized: bodyUnauthorizedBreaking,
		invalid:      typedInvalid(),
		qs:           qsRouter,
	}
)

// bodyRefused is the router's answer when qs throws on its limits.
var bodyRefused = []byte(`{"success":false,"error":"Invalid query parameters"}`)

// meteorInvalid is the 400 bodies of a Meteor.Error("invalid-params",
// message) as the API's failure() words it: the reason with the error
// appended, and the error type; and the router's refusal.
func meteorInvalid() (b [numQueryResults][]byte) {
	for q := queryRequired; q < numQueryResults; q++ {
		b[q] = []byte(`{"success":false,"error":"` + q.message() + ` [invalid-params]","errorType":"invalid-params"}`)
	}
	b[queryLimit] = bodyRefused
	return b
}

// typedInvalid is the 400 bodies of a typed route (packages/http-router
// Router.ts): the ajv messages joined by "\n " (ajv stops at the first, so
// there is one) under the error type, and the router's refusal.
func typedInvalid() (b [numQueryResults][]byte) {
	for q := queryRequired; q < numQueryResults; q++ {
		b[q] = []byte(`{"success":false,"errorType":"error-invalid-params","error":"` + q.message() + `"}`)
	}
	b[queryLimit] = bodyRefused
	return b
}

// eraOf returns the era of a Rocket.Chat version such as "6.12.0" or
// "7.6.1-rc.0": major and minor decide.
func eraOf(version string) (*era, error) {
	major, minor, ok := majorMinor(version)
	if !ok {
		return nil, fmt.Errorf("sessions: rocketchat version %q: want major.minor[.patch]", version)
	}
	switch {
	case major < 7 || (major == 7 && minor < 4):
		return eraRestivus, nil
	case major == 7 && minor < 6:
		return eraExtended401, nil
	case major == 7:
		return eraRouter, nil
	}
	return eraTyped, nil
}

// majorMinor reads the first two numbers of a version, ignoring a leading
// "v" and anything after the second number's end.
func majorMinor(v string) (major, minor int, ok bool) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	first, rest, found := strings.Cut(v, ".")
	if !found {
		return 0, 0, false
	}
	end := 0
	for end < len(rest) && rest[end] >= '0' && rest[end] <= '9' {
		end++
	}
	var err1, err2 error
	major, err1 = strconv.Atoi(first)
	minor, err2 = strconv.Atoi(rest[:end])
	return major, minor, err1 == nil && err2 == nil && major >= 0 && end > 0
}

// SetVersion makes the handler answer as Rocket.Chat version does, from
// the next request on, and returns the name of its era. It is safe for
// concurrent use with Serve.
func (h *Handler) SetVersion(version string) (string, error) {
	e, err := eraOf(version)
	if err != nil {
		return "", err
	}
	h.era.Store(e)
	return e.name, nil
}

// EraOf returns the name of the era of a Rocket.Chat version, as SetVersion
// would pick it.
func EraOf(version string) (string, error) {
	e, err := eraOf(version)
	if err != nil {
		return "", err
	}
	return e.name, nil
}
