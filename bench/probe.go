//go:build linux

package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// Before measuring, each target is asked each case's questions once and its
// answers compared with what the case expects: a fast wrong answer (say, the
// route falling through to the upstream) must not pass for a fast right
// one. A target that answers wrongly is still measured, and flagged.

var probeClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 4},
}

func probeDo(method, url string, body string, header map[string]string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := probeClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return resp.StatusCode, b, err
}

func authHeader(u, k int) map[string]string {
	return map[string]string{"X-User-Id": userID(u), "X-Auth-Token": loginToken(u, k)}
}

// expect compares one answer with the wanted status and body.
func expect(what string, gotStatus int, got []byte, err error, wantStatus int, want []byte) error {
	if err != nil {
		return fmt.Errorf("%s: %v", what, err)
	}
	if gotStatus != wantStatus {
		return fmt.Errorf("%s: got %d want %d", what, gotStatus, wantStatus)
	}
	if !bytes.Equal(got, want) {
		return fmt.Errorf("%s: body differs (got %d bytes %q…)", what, len(got), clip(got, 40))
	}
	return nil
}

func clip(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

// probeForwardGET checks a proxy returns the upstream's own 1 KB answer.
func probeForwardGET(base, path string, want []byte) error {
	st, b, err := probeDo("GET", base+path, "", authHeader(1, 0))
	return expect("GET", st, b, err, 200, want)
}

// probeForwardPOST checks the 16 KiB body comes back intact.
func probeForwardPOST(base, path string) error {
	st, b, err := probeDo("POST", base+path, postBody, map[string]string{"Content-Type": "application/json"})
	return expect("POST echo", st, b, err, 200, []byte(postBody))
}

// probeRoute asks for a hit, a bad token and a missing session of a few
// users spread over the data set.
func probeRoute(base string, users int) error {
	for _, u := range []int{0, users / 2, users - 1} {
		url := func(s int) string { return base + "/api/v1/sessions/info?sessionId=" + sessionID(u, s) }
		s := u % sessionsPerUser
		st, b, err := probeDo("GET", url(s), "", authHeader(u, 1))
		if err := expect("hit", st, b, err, 200, []byte(successBody(u, s))); err != nil {
			return err
		}
		st, b, err = probeDo("GET", url(s), "", map[string]string{"X-User-Id": userID(u), "X-Auth-Token": badToken(u, 0)})
		if err := expect("bad token", st, b, err, 401, []byte(body401)); err != nil {
			return err
		}
		st, b, err = probeDo("GET", url(missingSession), "", authHeader(u, 0))
		if err := expect("missing session", st, b, err, 404, []byte(body404)); err != nil {
			return err
		}
	}
	return nil
}
