// Command upstream is the load harness's stand-in Rocket.Chat server: a
// fasthttp server that answers as fast as it can, so that the proxies in front
// of it are what the harness measures.
//
//	GET  /download?bytes=N  N bytes of application/octet-stream (Content-Length set)
//	GET  anything else      a fixed 1024-byte JSON document
//	POST /upload            reads the streamed body, answers {"received":N}
//	POST anything else      echoes the body (at most 1 MiB) with its Content-Type
//	any  Upgrade: websocket 101, then answers the client's first frame with a
//	                        text frame "ok" and holds the connection idle until
//	                        the client closes it (the idle DDP tunnel case)
//	any  Upgrade: websocket on /sockjs/.../websocket
//	                        101, then echoes every text or binary frame and
//	                        sends a ping every ping_ms (query, default 30000):
//	                        a DDP connection with its heartbeat (the rcmix case)
//	POST /sockjs/.../xhr    holds the request hold_ms (query, default 25000),
//	                        then answers a SockJS message frame a["..."]\n
//	                        (an xhr-polling session)
//	POST /sockjs/.../xhr_streaming
//	                        streams a 2049-byte prelude, then a message frame
//	                        every interval_ms (query, default 5000) until the
//	                        client goes away (an xhr-streaming session)
//
// It prints "listening <addr>" on stdout once it accepts connections.
package main

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// JSONBody is the fixed GET answer: a Rocket.Chat-like REST document padded
// to exactly 1024 bytes, the size the harness measures with.
var JSONBody = func() []byte {
	b := []byte(`{"user":{"_id":"rbAXPnMktTFbNpwtJ","username":"bench.user","name":"Bench User","status":"online",` +
		`"statusConnection":"online","utcOffset":0,"active":true,"roles":["user"],"settings":{"preferences":{"language":"en"}}},` +
		`"rooms":[{"_id":"GENERAL","t":"c","name":"general","usersCount":12345,"msgs":678901,"default":true,"ro":false,` +
		`"_updatedAt":"2023-05-23T17:56:31.599Z","lastMessage":{"_id":"Qm8nNpxyq7cFEzRAj","msg":"hello"}}],"pad":"`)
	const size = 1024
	tail := []byte(`","success":true}`)
	for len(b)+len(tail) < size {
		b = append(b, 'x')
	}
	return append(b, tail...)
}()

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to listen on")
	flag.Parse()

	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
	s := &fasthttp.Server{
		Handler:               handle,
		NoDefaultServerHeader: true,
		NoDefaultDate:         true,
		StreamRequestBody:     true,
		MaxRequestBodySize:    1 << 20, // only the echo buffers; uploads stream
		ReadBufferSize:        16 << 10,
		IdleTimeout:           2 * time.Minute,
		CloseOnShutdown:       true,
	}
	fmt.Printf("listening %s\n", ln.Addr())

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		os.Exit(0) // a stand-in: nothing to drain
	}()
	if err := s.Serve(ln); err != nil {
		fmt.Fprintln(os.Stderr, "upstream:", err)
		os.Exit(1)
	}
}

func handle(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	path := ctx.Path()
	sockjs := bytes.HasPrefix(path, []byte("/sockjs/"))
	if bytes.EqualFold(h.Peek("Upgrade"), []byte("websocket")) {
		if sockjs {
			serveDDP(ctx)
			return
		}
		serveWebSocket(ctx)
		return
	}
	switch {
	case sockjs && ctx.IsPost() && bytes.HasSuffix(path, []byte("/xhr")):
		servePoll(ctx)
	case sockjs && ctx.IsPost() && bytes.HasSuffix(path, []byte("/xhr_streaming")):
		serveStream(ctx)
	case ctx.IsGet() && string(ctx.Path()) == "/download":
		n, err := strconv.Atoi(string(ctx.QueryArgs().Peek("bytes")))
		if err != nil || n < 0 {
			ctx.Error("bad bytes", fasthttp.StatusBadRequest)
			return
		}
		ctx.SetContentType("application/octet-stream")
		ctx.SetBodyStream(&patternReader{left: int64(n)}, n)
	case ctx.IsPost() && string(ctx.Path()) == "/upload":
		n, err := io.Copy(io.Discard, bodyReader(ctx))
		if err != nil {
			ctx.Error("upload: "+err.Error(), fasthttp.StatusBadRequest)
			return
		}
		ctx.SetContentType("application/json")
		ctx.SetBodyString(`{"received":` + strconv.FormatInt(n, 10) + `}`)
	case ctx.IsPost():
		echo(ctx)
	default:
		ctx.SetContentType("application/json")
		ctx.Response.SetBodyRaw(JSONBody)
	}
}

// bodyReader is the request body as a stream, whether fasthttp streamed it
// (StreamRequestBody) or already held it.
func bodyReader(ctx *fasthttp.RequestCtx) io.Reader {
	if r := ctx.RequestBodyStream(); r != nil {
		return r
	}
	return bytes.NewReader(ctx.PostBody())
}

var echoBufs = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// echo answers with the request body and its Content-Type (the POST case).
func echo(ctx *fasthttp.RequestCtx) {
	buf := echoBufs.Get().(*bytes.Buffer)
	buf.Reset()
	defer echoBufs.Put(buf)
	if _, err := buf.ReadFrom(io.LimitReader(bodyReader(ctx), 1<<20+1)); err != nil || buf.Len() > 1<<20 {
		ctx.Error("echo: body unreadable or over 1 MiB", fasthttp.StatusRequestEntityTooLarge)
		return
	}
	if ct := ctx.Request.Header.ContentType(); len(ct) > 0 {
		ctx.Response.Header.SetContentTypeBytes(ct)
	}
	ctx.SetBody(buf.Bytes()) // copies: buf goes back to the pool
}

// patternReader yields left bytes of a repeating pattern (not zeros, so a
// proxy that compressed or skipped zero pages would not look faster).
type patternReader struct{ left int64 }

var pattern = bytes.Repeat([]byte("sessiongate-bench-"), 4096)

func (r *patternReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > r.left {
		p = p[:r.left]
	}
	n := 0
	for n < len(p) {
		n += copy(p[n:], pattern)
	}
	r.left -= int64(n)
	return n, nil
}

// websocketGUID is the fixed GUID of RFC 6455 §1.3 hashed into
// Sec-WebSocket-Accept.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// frameOK is an unmasked final text frame carrying "ok" (RFC 6455 §5.2:
// servers never mask).
var frameOK = []byte{0x81, 0x02, 'o', 'k'}

// serveWebSocket completes the handshake (RFC 6455 §4.2.2), answers the
// client's first frame with frameOK so the client knows the tunnel carries
// bytes both ways, then stays idle until the client goes away.
func serveWebSocket(ctx *fasthttp.RequestCtx) {
	key := ctx.Request.Header.Peek("Sec-WebSocket-Key")
	if len(key) == 0 {
		ctx.Error("missing Sec-WebSocket-Key", fasthttp.StatusBadRequest)
		return
	}
	sum := sha1.Sum(append(append([]byte(nil), key...), websocketGUID...))
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	ctx.Response.Header.Set("Upgrade", "websocket")
	ctx.Response.Header.Set("Connection", "Upgrade")
	ctx.Response.Header.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
	ctx.Hijack(func(c net.Conn) {
		var buf [512]byte
		if _, err := c.Read(buf[:]); err != nil {
			return
		}
		if _, err := c.Write(frameOK); err != nil {
			return
		}
		io.CopyBuffer(io.Discard, c, buf[:]) // idle until the client closes
	})
}

// queryMillis is the query argument name as milliseconds, def when absent
// or not a positive number.
func queryMillis(ctx *fasthttp.RequestCtx, name string, def time.Duration) time.Duration {
	n, err := strconv.Atoi(string(ctx.QueryArgs().Peek(name)))
	if err != nil || n <= 0 {
		return def
	}
	return time.Duration(n) * time.Millisecond
}

// PollAnswer is the held xhr poll's answer and StreamFrame one message of
// an xhr stream: SockJS array frames ("a" + JSON array of strings, then a
// newline) carrying a DDP message, as Rocket.Chat sends them.
const (
	PollAnswer  = `a["{\"msg\":\"changed\",\"collection\":\"stream-notify-user\",\"id\":\"id\",\"fields\":{\"eventName\":\"bench/notification\",\"args\":[]}}"]` + "\n"
	StreamFrame = `a["{\"msg\":\"ping\"}"]` + "\n"
)

// StreamPrelude is what SockJS's xhr_streaming sends first: 2048 'h' and a
// newline, so browsers start handing the body to the script.
var StreamPrelude = append(bytes.Repeat([]byte{'h'}, 2048), '\n')

// servePoll holds an xhr-polling request as Rocket.Chat does while it has
// nothing to say, then answers one message frame.
func servePoll(ctx *fasthttp.RequestCtx) {
	time.Sleep(queryMillis(ctx, "hold_ms", 25*time.Second))
	ctx.SetContentType("application/javascript; charset=UTF-8")
	ctx.SetBodyString(PollAnswer)
}

// serveStream streams the prelude, then a message frame every interval
// (chunked: no length is known), until a write fails because the client
// went away.
func serveStream(ctx *fasthttp.RequestCtx) {
	every := queryMillis(ctx, "interval_ms", 5*time.Second)
	ctx.SetContentType("application/javascript; charset=UTF-8")
	ctx.SetBodyStreamWriter(func(w *bufio.Writer) {
		if _, err := w.Write(StreamPrelude); err != nil || w.Flush() != nil {
			return
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for range t.C {
			if _, err := w.WriteString(StreamFrame); err != nil || w.Flush() != nil {
				return
			}
		}
	})
}

// serveDDP completes the handshake, then echoes every data frame the client
// sends (unmasked, RFC 6455 §5.1) and sends an empty ping every ping_ms,
// until the client closes or a read fails. Pongs are read and dropped.
func serveDDP(ctx *fasthttp.RequestCtx) {
	key := ctx.Request.Header.Peek("Sec-WebSocket-Key")
	if len(key) == 0 {
		ctx.Error("missing Sec-WebSocket-Key", fasthttp.StatusBadRequest)
		return
	}
	every := queryMillis(ctx, "ping_ms", 30*time.Second)
	sum := sha1.Sum(append(append([]byte(nil), key...), websocketGUID...))
	ctx.SetStatusCode(fasthttp.StatusSwitchingProtocols)
	ctx.Response.Header.Set("Upgrade", "websocket")
	ctx.Response.Header.Set("Connection", "Upgrade")
	ctx.Response.Header.Set("Sec-WebSocket-Accept", base64.StdEncoding.EncodeToString(sum[:]))
	ctx.Hijack(func(c net.Conn) {
		var mu sync.Mutex // the pinger and the echo both write
		write := func(b []byte) error {
			mu.Lock()
			defer mu.Unlock()
			_, err := c.Write(b)
			return err
		}
		done := make(chan struct{})
		defer close(done)
		go func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-done:
					return
				case <-t.C:
					if write([]byte{0x89, 0x00}) != nil {
						return
					}
				}
			}
		}()
		r := bufio.NewReaderSize(c, 1024)
		var out []byte
		for {
			op, payload, err := readClientFrame(r)
			if err != nil {
				return
			}
			switch op {
			case 0x1, 0x2: // text, binary: echo
				out = appendServerFrame(out[:0], op, payload)
				if write(out) != nil {
					return
				}
			case 0x8: // close: answer it and stop
				write([]byte{0x88, 0x00})
				return
			}
		}
	})
}

// readClientFrame reads one final, masked client frame of at most 64 KiB
// and returns its opcode and unmasked payload. Fragmented or unmasked frames
// are errors: the harness's clients send neither.
func readClientFrame(r *bufio.Reader) (byte, []byte, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	if h[0]&0x80 == 0 || h[1]&0x80 == 0 {
		return 0, nil, fmt.Errorf("fragmented or unmasked frame % x", h)
	}
	n := int(h[1] & 0x7f)
	switch n {
	case 126:
		var ext [2]byte
		if _, err := io.ReadFull(r, ext[:]); err != nil {
			return 0, nil, err
		}
		n = int(ext[0])<<8 | int(ext[1])
	case 127:
		return 0, nil, fmt.Errorf("frame over 64 KiB")
	}
	var mask [4]byte
	if _, err := io.ReadFull(r, mask[:]); err != nil {
		return 0, nil, err
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return 0, nil, err
	}
	for i := range p {
		p[i] ^= mask[i&3]
	}
	return h[0] & 0x0f, p, nil
}

// appendServerFrame appends a final, unmasked frame of opcode op.
func appendServerFrame(b []byte, op byte, p []byte) []byte {
	b = append(b, 0x80|op)
	if len(p) < 126 {
		b = append(b, byte(len(p)))
	} else {
		b = append(b, 126, byte(len(p)>>8), byte(len(p)))
	}
	return append(b, p...)
}
