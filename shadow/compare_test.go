package shadow

import (
	"errors"
	"strings"
	"testing"
)

const (
	seedBody = `{"_id":"646ceae9a8c3a3ba32d0e897","sessionId":"QoYYFw2t9oKks2niG","loginToken":"orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU=","ip":"172.20.0.2","device":{"os":{"name":"Windows","version":"10"}},"roles":["user","admin"],"day":23,"success":true}`
	notFound = `{"success":false,"error":"Session not found"}`
)

func routeAnswer(status int, body string) *answer {
	return &answer{status: status, body: []byte(body), contentType: "application/json", cacheControl: "no-store", pragma: "no-cache"}
}

func TestCompare(t *testing.T) {
	own := routeAnswer(200, seedBody)
	withHeader := func(a *answer, f func(*answer)) *answer { f(a); return a }
	tests := []struct {
		name string
		own  *answer
		up   *answer
		err  error
		want result
	}{
		{"same bytes", own, routeAnswer(200, seedBody), nil, resultMatch},
		{"same 404", routeAnswer(404, notFound), routeAnswer(404, notFound), nil, resultMatch},
		{"success first", own, routeAnswer(200, `{"success":true,`+strings.TrimSuffix(strings.TrimPrefix(seedBody, "{"), `,"success":true}`)+"}"), nil, resultJSONEqualBytesDiffer},
		{"pretty printed", own, routeAnswer(200, strings.ReplaceAll(seedBody, ",", ", ")), nil, resultJSONEqualBytesDiffer},
		{"number form", own, routeAnswer(200, strings.Replace(seedBody, `"day":23`, `"day":2.3e1`, 1)), nil, resultJSONEqualBytesDiffer},
		{"value differs", own, routeAnswer(200, strings.Replace(seedBody, `"day":23`, `"day":24`, 1)), nil, resultMismatchBody},
		{"member missing", own, routeAnswer(200, strings.Replace(seedBody, `"day":23,`, ``, 1)), nil, resultMismatchBody},
		{"not JSON", own, routeAnswer(200, seedBody+"x"), nil, resultMismatchBody},
		{"status differs", own, routeAnswer(404, notFound), nil, resultMismatchStatus},
		{"401 vs 200", routeAnswer(401, `{"status":"error","message":"You must be logged in to do this."}`), routeAnswer(200, seedBody), nil, resultMismatchStatus},
		{"pragma missing", own, withHeader(routeAnswer(200, seedBody), func(a *answer) { a.pragma = "" }), nil, resultMismatchHeader},
		{"content type with charset", own, withHeader(routeAnswer(200, seedBody), func(a *answer) { a.contentType = "application/json; charset=utf-8" }), nil, resultMismatchHeader},
		{"header and order", own, withHeader(routeAnswer(200, strings.ReplaceAll(seedBody, ",", ", ")), func(a *answer) { a.cacheControl = "" }), nil, resultMismatchHeader},
		{"no answer", own, nil, errors.New("dial tcp: connection refused"), resultUpstreamError},
		{"500", own, routeAnswer(500, `{"success":false,"error":"Internal server error"}`), nil, resultUpstreamError},
		{"502 page", own, withHeader(routeAnswer(502, "<html>Bad Gateway</html>"), func(a *answer) { a.contentType = "text/html" }), nil, resultUpstreamError},
		{"429", own, routeAnswer(429, `{"success":false,"error":"Error, too many requests."}`), nil, resultUpstreamError},
		{"unknown endpoint", own, routeAnswer(404, `{"success":false,"error":"Resource not found"}`), nil, resultUpstreamLacksRoute},
		{"404 page", routeAnswer(404, notFound), withHeader(routeAnswer(404, "<html>404</html>"), func(a *answer) { a.contentType = "text/html" }), nil, resultUpstreamLacksRoute},
		{"web app", own, withHeader(routeAnswer(200, "<!DOCTYPE html>"), func(a *answer) { a.contentType = "text/html; charset=utf-8" }), nil, resultUpstreamLacksRoute},
		{"licence 5.x", own, routeAnswer(403, `{"success":false,"error":"unauthorized"}`), nil, resultUpstreamLacksRoute},
		{"licence newer", own, routeAnswer(400, `{"success":false,"error":"This is an enterprise feature [error-action-not-allowed]","errorType":"error-action-not-allowed"}`), nil, resultUpstreamLacksRoute},
		{"restivus 405", own, routeAnswer(405, `{"status":"error","message":"API endpoint does not exist"}`), nil, resultUpstreamLacksRoute},
		{"400 invalid params is the route's", routeAnswer(400, `{"success":false,"error":"must be string [invalid-params]","errorType":"invalid-params"}`), routeAnswer(400, `{"success":false,"error":"must be string [invalid-params]","errorType":"invalid-params"}`), nil, resultMatch},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := compare(tt.own, tt.up, tt.err)
			if got.result != tt.want {
				t.Errorf("got %s (%s), want %s", got.result, got.diff, tt.want)
			}
		})
	}
}

// TestDiffBodies: the diff names members and quotes the route's protocol
// members only; the session document's values never appear.
func TestDiffBodies(t *testing.T) {
	tests := []struct {
		name    string
		own, up string
		want    []string
		mustNot []string
	}{
		{"value", seedBody, strings.Replace(seedBody, `"ip":"172.20.0.2"`, `"ip":"10.0.0.1"`, 1),
			[]string{"ip: string(10) vs string(8)"}, []string{"172.20", "10.0.0.1"}},
		{"token hash", seedBody, strings.Replace(seedBody, `orklPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU=`, `AAAAPYtfnjnG6mG7OMuLbOBDzs8I9myfcLl2yzv7WoU=`, 1),
			[]string{"loginToken: string(44) vs string(44)"}, []string{"orkl", "AAAA", "PYtfnjn"}},
		{"nested", seedBody, strings.Replace(seedBody, `"version":"10"`, `"version":"11"`, 1),
			[]string{"device.os.version: string(2) vs string(2)"}, []string{`"10"`, `"11"`}},
		{"array", seedBody, strings.Replace(seedBody, `["user","admin"]`, `["user"]`, 1),
			[]string{"roles: 2 vs 1 items"}, []string{"admin"}},
		{"type", seedBody, strings.Replace(seedBody, `"day":23`, `"day":"23"`, 1),
			[]string{"day: number vs string"}, nil},
		{"only one side", seedBody, strings.Replace(seedBody, `"day":23`, `"month":5`, 1),
			[]string{"day: only in sessiongate's", "month: only in upstream's"}, nil},
		{"status mismatch", seedBody, notFound,
			[]string{`success: true vs false`, "body: 7 members only in sessiongate's: [_id,sessionId,loginToken,ip,...]", "error: only in upstream's"}, []string{"orkl"}},
		{"protocol members quoted", `{"success":false,"error":"Session not found"}`, `{"success":false,"error":"Resource not found"}`,
			[]string{`error: "Session not found" vs "Resource not found"`}, nil},
		{"success placement", seedBody, `{"success":true,` + strings.TrimSuffix(strings.TrimPrefix(seedBody, "{"), `,"success":true}`) + "}",
			[]string{"body: member order differs from member 0: sessiongate's [_id,sessionId,loginToken,ip,...], upstream's [success,_id,sessionId,loginToken,...]"}, nil},
		{"spacing", seedBody, strings.Replace(seedBody, `"day":23`, `"day": 23`, 1),
			[]string{"same JSON, same member order; bytes differ from offset"}, nil},
		{"not JSON", seedBody, "<html>", []string{"upstream's body is not JSON (6 bytes)"}, []string{"html"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := diffBodies([]byte(tt.own), []byte(tt.up))
			for _, w := range tt.want {
				if !strings.Contains(got, w) {
					t.Errorf("got %q, want it to contain %q", got, w)
				}
			}
			for _, m := range tt.mustNot {
				if strings.Contains(got, m) {
					t.Errorf("got %q, which shows %q", got, m)
				}
			}
		})
	}
}

func TestDiffBodiesIsShort(t *testing.T) {
	var own, up strings.Builder
	own.WriteString("{")
	up.WriteString("{")
	for i := range 100 {
		if i > 0 {
			own.WriteString(",")
			up.WriteString(",")
		}
		own.WriteString(`"m` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `":1`)
		up.WriteString(`"m` + strings.Repeat("x", i%7) + string(rune('a'+i%26)) + `":2`)
	}
	own.WriteString("}")
	up.WriteString("}")
	got := diffBodies([]byte(own.String()), []byte(up.String()))
	if len(got) > 600 || !strings.Contains(got, "more") {
		t.Errorf("got a %d-byte diff %q, want at most 600 bytes ending in a count of the rest", len(got), got)
	}
}

func TestJSONEqual(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{`{"a":1,"b":2}`, `{"b":2,"a":1}`, true},
		{`{"a":1}`, `{"a":1.0}`, true},
		{`{"a":1}`, `{"a":1e0}`, true},
		{`{"a":1}`, `{"a":"1"}`, false},
		{`{"a":[1,2]}`, `{"a":[2,1]}`, false},
		{`{"a":{"b":null}}`, `{"a":{}}`, false},
		{`{"a":"\u00e9"}`, `{"a":"é"}`, true},
		{` {"a":true} `, `{"a":true}`, true},
		{`{"a":true}`, `{"a":true}{}`, false},
		{`{"a":`, `{"a":1}`, false},
		{`{"a":12345678901234567890123}`, `{"a":12345678901234567890124}`, false},
		{strings.Repeat("[", 100) + strings.Repeat("]", 100), strings.Repeat("[", 100) + strings.Repeat("]", 100), false}, // too deep
	}
	for _, tt := range tests {
		if got := jsonEqual([]byte(tt.a), []byte(tt.b)); got != tt.want {
			t.Errorf("jsonEqual(%s, %s): got %v, want %v", tt.a, tt.b, got, tt.want)
		}
		if got := jsonEqual([]byte(tt.b), []byte(tt.a)); got != tt.want {
			t.Errorf("jsonEqual(%s, %s): got %v, want %v", tt.b, tt.a, got, tt.want)
		}
	}
}

// FuzzDiffBodies: whatever the upstream sends, comparing never panics,
// equality is symmetric, and the diff stays short.
func FuzzDiffBodies(f *testing.F) {
	f.Add([]byte(seedBody), []byte(notFound))
	f.Add([]byte(seedBody), []byte(strings.ReplaceAll(seedBody, ",", ", ")))
	f.Add([]byte(`{"a":[{"b":1}]}`), []byte(`{"a":[{"b":1.0,"c":null}]}`))
	f.Add([]byte(`[]`), []byte(`<html>`))
	f.Fuzz(func(t *testing.T, a, b []byte) {
		if jsonEqual(a, b) != jsonEqual(b, a) {
			t.Fatalf("jsonEqual is not symmetric for %q and %q", a, b)
		}
		if d := diffBodies(a, b); len(d) > 2000 {
			t.Fatalf("diff of %d bytes", len(d))
		}
		compare(routeAnswer(200, string(a)), routeAnswer(200, string(b)), nil)
	})
}
