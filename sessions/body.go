package sessions

import "github.com/valyala/fasthttp"

// The route's fixed bodies, byte for byte as Rocket.Chat sends them (docs/route.md,
// docs/data-contract.md). Compact JSON, no newline.
var (
	bodyUnauthorizedClassic  = []byte(`{"status":"error","message":"You must be logged in to do this."}`)
	bodyUnauthorizedExtended = []byte(`{"success":false,"error":"You must be logged in to do this.","status":"error","message":"You must be logged in to do this."}`)
	bodyUnauthorizedBreaking = []byte(`{"success":false,"error":"You must be logged in to do this."}`)
	bodyNotFound             = []byte(`{"success":false,"error":"Session not found"}`)
	bodyUnavailable          = []byte(`{"success":false,"error":"Service unavailable"}`)
	bodySuccessOnly          = []byte(`{"success":true}`)
)

// setHeaders sets the status and the three headers every answer of the
// route carries (docs/route.md). The proxy's server invents no Date or
// Content-Type on forwarded answers; resetting the header turns the Date
// back on for this answer of our own (RFC 9110 §6.6.1: an origin server with
// a clock sends Date, as Rocket.Chat does).
func setHeaders(ctx *fasthttp.RequestCtx, status int) {
	ctx.Response.Header.Reset()
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.Header.Set("Cache-Control", "no-store")
	ctx.Response.Header.Set("Pragma", "no-cache")
}

// writeJSON answers with a fixed body. body is shared and never modified.
func writeJSON(ctx *fasthttp.RequestCtx, status int, body []byte) {
	setHeaders(ctx, status)
	ctx.Response.SetBodyRaw(body)
}

// trimJSONSpace trims JSON white space (RFC 8259 §2) from both ends.
func trimJSONSpace(s string) string {
	for len(s) > 0 && isJSONSpace(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isJSONSpace(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

func isJSONSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
