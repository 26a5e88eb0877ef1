package test

import (
	"bufio"
	"crypto/sha256"
	binenc "encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// Streaming (docs/forwarding.md): bodies of any size pass without being held
// in memory, and a response is flushed to the client as it arrives.

// streamSize is the size of the big transfers: 256 MiB,
// 32 MiB under -short for quick local runs.
func streamSize() int64 {
	if testing.Short() {
		return 32 << 20
	}
	return 256 << 20
}

// maxRSS is the bound on sessiongate's resident memory during a transfer.
const maxRSS = 64 << 20

// patternReader yields n bytes made of one random 1 MiB block whose first 8
// bytes carry the block's index, so a lost, repeated or reordered block
// changes the hash, while generating it costs nothing.
type patternReader struct {
	block []byte
	off   int64
	n     int64
}

func newPatternReader(n int64) *patternReader {
	r := rand.New(rand.NewPCG(1, 2))
	b := make([]byte, 1<<20)
	for i := 0; i < len(b); i += 8 {
		binenc.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	return &patternReader{block: b, n: n}
}

func (p *patternReader) Read(b []byte) (int, error) {
	if p.off >= p.n {
		return 0, io.EOF
	}
	in := int(p.off % int64(len(p.block)))
	if in == 0 {
		binenc.LittleEndian.PutUint64(p.block, uint64(p.off>>20))
	}
	n := copy(b, p.block[in:])
	if rest := p.n - p.off; int64(n) > rest {
		n = int(rest)
	}
	p.off += int64(n)
	return n, nil
}

// hashOf is the hex SHA-256 of the pattern of n bytes.
// patternHandler answers n pattern bytes, with a Content-Length unless the
// query asks for ?chunked=1.
func patternHandler(n int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		io.Copy(w, newPatternReader(n))
	}
}

func hashOf(n int64) string {
	h := sha256.New()
	io.Copy(h, newPatternReader(n))
	return hex.EncodeToString(h.Sum(nil))
}

// rssWatch samples g's RSS every 20 ms until stopped and returns the peak.
func rssWatch(g *Gate) (stop func() int64) {
	var peak atomic.Int64
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(20 * time.Millisecond)
		defer t.Stop()
		for {
			if r := g.RSS(); r > peak.Load() {
				peak.Store(r)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() int64 {
		close(done)
		<-finished
		return peak.Load()
	}
}

func TestUploadStreams(t *testing.T) {
	t.Parallel()
	linuxOnly(t, "the resident set size is read from /proc")
	n := streamSize()
	want := hashOf(n)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		got, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintf(w, "%d %s %s", got, hex.EncodeToString(h.Sum(nil)), strings.Join(r.TransferEncoding, ","))
	}))
	defer up.Close()
	g := fwdGate(t, up.URL, nil)
	for _, tt := range []struct {
		name          string
		contentLength int64
	}{
		{"content-length", n},
		{"chunked", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", g.URL+"/api/v1/rooms.upload/x", io.NopCloser(newPatternReader(n)))
			req.ContentLength = tt.contentLength
			stop := rssWatch(g)
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			peak := stop()
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			t.Logf("%d MiB in %v, peak RSS %.1f MiB", n>>20, time.Since(start).Round(time.Millisecond), float64(peak)/(1<<20))
			wantBody := fmt.Sprintf("%d %s ", n, want)
			if tt.contentLength < 0 {
				wantBody += "chunked"
			}
			if resp.StatusCode != 200 || string(body) != wantBody {
				t.Errorf("upstream got %q (status %d), want %q", body, resp.StatusCode, wantBody)
			}
			if peak > maxRSS {
				t.Errorf("peak RSS %d bytes, want under %d", peak, maxRSS)
			}
		})
	}
}

func TestDownloadStreams(t *testing.T) {
	t.Parallel()
	linuxOnly(t, "the resident set size is read from /proc")
	n := streamSize()
	want := hashOf(n)
	up := httptest.NewServer(patternHandler(n))
	defer up.Close()
	g := fwdGate(t, up.URL, nil)
	for _, tt := range []struct {
		name, query string
		wantLength  int64
	}{
		{"content-length", "", n},
		{"chunked", "?chunked=1", -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			stop := rssWatch(g)
			start := time.Now()
			resp, err := http.Get(g.URL + "/file-upload/id/big.bin" + tt.query)
			if err != nil {
				stop()
				t.Fatal(err)
			}
			h := sha256.New()
			got, err := io.Copy(h, resp.Body)
			resp.Body.Close()
			peak := stop()
			t.Logf("%d MiB in %v, peak RSS %.1f MiB", n>>20, time.Since(start).Round(time.Millisecond), float64(peak)/(1<<20))
			if err != nil || got != n || hex.EncodeToString(h.Sum(nil)) != want {
				t.Errorf("got %d bytes (%v), hash match %v; want %d bytes, same hash", got, err, hex.EncodeToString(h.Sum(nil)) == want, n)
			}
			if resp.ContentLength != tt.wantLength {
				t.Errorf("Content-Length: got %d, want %d", resp.ContentLength, tt.wantLength)
			}
			if peak > maxRSS {
				t.Errorf("peak RSS %d bytes, want under %d", peak, maxRSS)
			}
		})
	}
}

// TestStreamingResponseFlushedPieceByPiece: an upstream writing a response
// in pieces, like SockJS xhr_streaming, reaches the client piece by piece.
// The upstream sends each piece only once the client has received the one
// before (lockstep), so a proxy that held pieces back would stall the
// exchange instead of merely slowing it: the test does not depend on timing.
func TestStreamingResponseFlushedPieceByPiece(t *testing.T) {
	t.Parallel()
	const pieces = 5
	received := make(chan int)
	stalled := make(chan int, 1)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/javascript; charset=UTF-8")
		w.WriteHeader(200)
		fl := w.(http.Flusher)
		// SockJS opens xhr_streaming with a 2 KiB prelude of 'h's.
		io.WriteString(w, strings.Repeat("h", 2048)+"\n")
		fl.Flush()
		for i := range pieces {
			fmt.Fprintf(w, "a[\"msg %d\"]\n", i)
			fl.Flush()
			select {
			case <-received:
			case <-time.After(5 * time.Second):
				stalled <- i
				return
			}
		}
	}))
	defer up.Close()
	g := fwdGate(t, up.URL, nil)
	resp, err := http.Post(g.URL+"/sockjs/123/abc/xhr_streaming", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != -1 {
		t.Errorf("Content-Length: got %d, want none (chunked)", resp.ContentLength)
	}
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil {
		t.Fatalf("prelude: %v", err)
	}
	for i := range pieces {
		line, err := br.ReadString('\n')
		if err != nil {
			select {
			case n := <-stalled:
				t.Fatalf("piece %d never reached the client before the upstream gave up", n)
			default:
			}
			t.Fatalf("piece %d: %v", i, err)
		}
		if want := fmt.Sprintf("a[\"msg %d\"]\n", i); line != want {
			t.Fatalf("piece %d: got %q, want %q", i, line, want)
		}
		received <- i
	}
}
