// Package loop is the event loop: the forwarding hot path without a
// goroutine per connection, on Linux (elsewhere Start returns nil and the
// caller's server serves every connection).
//
// With one goroutine per connection, every forwarded request parks and
// wakes two goroutines (waiting for the client's next request, waiting for
// the upstream's answer), and on a small machine the Go scheduler's
// wake-ups, spinning threads and netpoll calls cost more CPU than the
// proxying itself (profiles in bench/README.md). nginx does the same
// system calls from one thread per core that sleeps only in epoll_wait.
// This comes close: one loop per GOMAXPROCS but one (DefaultLoops), each a
// single goroutine with its own epoll set (parked in the runtime's
// netpoller when it has nothing to do, see wait), accepting from the shared
// listening socket (EPOLLEXCLUSIVE) and driving each connection as a state
// machine over non-blocking sockets. Open WebSocket tunnels are carried
// there too (Engine.Join).
//
// The loop serves the common case completely: an HTTP/1.1 request that is
// not a WebSocket handshake and not an intercepted route, whose head and
// Content-Length body (if any) fit in its buffer, answered with any
// response the upstream sends (fixed, chunked or close-delimited bodies of
// any size, streamed with backpressure). Every other request, and every
// request it cannot route yet (the upstream pool is full, a kept-alive
// upstream connection failed before answering a request that is safe to
// repeat), is handed over before anything of it went upstream: the
// connection, with the bytes already read in front, goes to the fasthttp
// server, which serves it from then on exactly as it does without the loop.
//
// It is an I/O driver: it moves bytes and consults the layers below it,
// the HTTP/1.1 codec (proxy/internal/h1: the upstream head, built with the
// options the proxy gives, the response head's filter, chunked bodies) and
// the exchange rulebook (proxy/internal/exchange: framing, reuse, 1xx,
// retry, failure to answer), as the fasthttp path does. What only the
// proxy knows (its routes, its client-address rule, the upstream dialer
// and connection limit, its metrics and logs) comes in through Options.
package loop
