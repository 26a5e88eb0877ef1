package shadow

import (
	"bytes"
	"fmt"
	"mime"
	"strings"

	"github.com/valyala/fasthttp"
)

// result is how one comparison ended; it labels sessiongate_shadow_total.
type result uint8

const (
	resultMatch                result = iota // same status, same bytes, same headers
	resultJSONEqualBytesDiffer               // same JSON value, other bytes (member order, spacing)
	resultMismatchStatus                     // the statuses differ
	resultMismatchBody                       // same status, bodies differ as JSON values
	resultMismatchHeader                     // same body, a route header differs
	resultUpstreamError                      // no answer, or 429 / 5xx
	resultDropped                            // not compared: every slot was taken
	resultUpstreamLacksRoute                 // the upstream does not serve the route
	numResults
)

var resultNames = [numResults]string{
	resultMatch:                "match",
	resultJSONEqualBytesDiffer: "json_equal_bytes_differ",
	resultMismatchStatus:       "mismatch_status",
	resultMismatchBody:         "mismatch_body",
	resultMismatchHeader:       "mismatch_header",
	resultUpstreamError:        "upstream_error",
	resultDropped:              "dropped",
	resultUpstreamLacksRoute:   "upstream_lacks_route",
}

func (r result) String() string { return resultNames[r] }

// answer is one side's response, copied: status, body and the three
// headers every answer of the route carries (docs/route.md).
type answer struct {
	status       int
	body         []byte
	contentType  string
	cacheControl string
	pragma       string
}

// snapshot copies what a comparison needs out of resp.
func snapshot(resp *fasthttp.Response) *answer {
	return &answer{
		status:       resp.StatusCode(),
		body:         bytes.Clone(resp.Body()),
		contentType:  string(resp.Header.Peek(fasthttp.HeaderContentType)),
		cacheControl: string(resp.Header.Peek(fasthttp.HeaderCacheControl)),
		pragma:       string(resp.Header.Peek(fasthttp.HeaderPragma)),
	}
}

// verdict is a comparison's result and a short description of the
// difference, safe to log: it names JSON members and value types and
// lengths, and quotes only the route's protocol members (see jsondiff.go).
type verdict struct {
	result result
	diff   string
}

// compare decides how own (sessiongate's) and up (the upstream's, or err)
// relate. The order is the rulebook: no answer, then an upstream that does
// not serve the route, then one that is failing, then status, body, and
// headers.
func compare(own, up *answer, err error) verdict {
	switch {
	case err != nil:
		return verdict{result: resultUpstreamError}
	case lacksRoute(up):
		return verdict{resultUpstreamLacksRoute, describe(up)}
	case up.status == fasthttp.StatusTooManyRequests || up.status >= 500:
		// Rate-limited or failing: the upstream said nothing about the
		// route's answer.
		return verdict{result: resultUpstreamError}
	case own.status != up.status:
		return verdict{resultMismatchStatus, diffBodies(own.body, up.body)}
	}
	sameBytes := bytes.Equal(own.body, up.body)
	var diff string
	if !sameBytes {
		diff = diffBodies(own.body, up.body)
		if !jsonEqual(own.body, up.body) {
			return verdict{resultMismatchBody, diff}
		}
	}
	if h := diffHeaders(own, up); h != "" {
		if diff != "" {
			h += "; " + diff
		}
		return verdict{resultMismatchHeader, h}
	}
	if !sameBytes {
		return verdict{resultJSONEqualBytesDiffer, diff}
	}
	return verdict{result: resultMatch}
}

// lacksRoute reports an answer the route never gives, which says the
// upstream does not serve it: a Community server or one older than 5.0
// (the route is Enterprise, licence module device-management, since 5.0).
//   - 403: 5.x–6.x without the licence answer API.v1.unauthorized(),
//     403 {"success":false,"error":"unauthorized"} (ee/server/api/sessions.ts).
//   - 400 with errorType "error-action-not-allowed": newer servers'
//     licence check, "This is an enterprise feature".
//   - 404 other than the route's own {"success":false,"error":"Session not
//     found"}: the API's answer for an unknown endpoint.
//   - 405: Restivus's "API endpoint does not exist" on older servers.
//   - a 2xx that is not JSON: the web app's HTML page, which Meteor serves
//     for a path nothing else claims.
func lacksRoute(up *answer) bool {
	isJSON := mediaType(up.contentType) == "application/json"
	switch {
	case up.status == fasthttp.StatusForbidden, up.status == fasthttp.StatusMethodNotAllowed:
		return true
	case up.status == fasthttp.StatusBadRequest:
		return isJSON && topString(up.body, "errorType") == "error-action-not-allowed"
	case up.status == fasthttp.StatusNotFound:
		return !isJSON || topString(up.body, "error") != "Session not found"
	case up.status/100 == 2:
		return !isJSON
	}
	return false
}

// mediaType is the type/subtype of a Content-Type value, lower case.
func mediaType(contentType string) string {
	if t, _, err := mime.ParseMediaType(contentType); err == nil {
		return t
	}
	return strings.ToLower(strings.TrimSpace(contentType))
}

// diffHeaders lists the route's headers that differ, with both values:
// these are response headers of fixed, non-secret values.
func diffHeaders(own, up *answer) string {
	var parts []string
	for _, h := range []struct{ name, own, up string }{
		{fasthttp.HeaderContentType, own.contentType, up.contentType},
		{fasthttp.HeaderCacheControl, own.cacheControl, up.cacheControl},
		{fasthttp.HeaderPragma, own.pragma, up.pragma},
	} {
		if h.own != h.up {
			parts = append(parts, fmt.Sprintf("header %s: %s vs %s", h.name, quoteShort(h.own), quoteShort(h.up)))
		}
	}
	return strings.Join(parts, "; ")
}

// describe says what an upstream answer is without quoting it beyond the
// protocol members: for the log line that says the route is missing.
func describe(a *answer) string {
	d := fmt.Sprintf("%d %s, %d bytes", a.status, quoteShort(a.contentType), len(a.body))
	if mediaType(a.contentType) == "application/json" {
		for _, m := range []string{"error", "errorType", "message"} {
			if v := topString(a.body, m); v != "" {
				d += fmt.Sprintf(", %s %s", m, quoteShort(v))
			}
		}
	}
	return d
}

// quoteShort quotes s, cut to 80 bytes.
func quoteShort(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return fmt.Sprintf("%q", s)
}
