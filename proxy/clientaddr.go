package proxy

import (
	"net/netip"

	"github.com/valyala/fasthttp"

	"github.com/sessiongate/sessiongate/proxy/internal/h1"
)

// Client address (docs/forwarding.md). Rocket.Chat trusts X-Real-IP blindly for rate
// limits and session.ip, so a client's own value is replaced by the
// connecting peer's address, and that address is appended to
// X-Forwarded-For, unless the peer is a trusted proxy (proxy.trusted_proxies)
// whose headers are passed on as they are. X-Forwarded-Proto and
// X-Forwarded-Host are set only when absent (h1.AppendRequestHead).

// isTrusted reports whether peer is in proxy.trusted_proxies.
func (p *Proxy) isTrusted(peer netip.Addr) bool {
	for _, pfx := range p.trusted {
		if pfx.Contains(peer) {
			return true
		}
	}
	return false
}

// appendRequestHead appends the head to send upstream for ctx's request
// (h1.AppendRequestHead); with upgrade, a WebSocket handshake's.
func (p *Proxy) appendRequestHead(dst []byte, ctx *fasthttp.RequestCtx, upgrade bool) ([]byte, h1.RequestHead, error) {
	return p.appendHead(dst, &ctx.Request.Header, remoteAddr(ctx), ctx.IsTLS(), upgrade)
}

// appendHead is appendRequestHead for a parsed header h from peer, over TLS
// or not.
func (p *Proxy) appendHead(dst []byte, h *fasthttp.RequestHeader, peer netip.Addr, isTLS, upgrade bool) ([]byte, h1.RequestHead, error) {
	return h1.AppendRequestHead(dst, h, p.headOptions(peer, isTLS, upgrade))
}

// headOptions is what the upstream head of a request from peer must know
// of its connection, on both request paths (the event loop parses heads
// without a RequestCtx and asks for a plain, non-upgrade request's).
func (p *Proxy) headOptions(peer netip.Addr, isTLS, upgrade bool) h1.RequestOptions {
	return h1.RequestOptions{
		Peer:        peer,
		Trusted:     p.isTrusted(peer),
		TLS:         isTLS,
		Upgrade:     upgrade,
		DefaultHost: p.fwd.hostHeader,
	}
}

// remoteAddr is the connecting peer's address, without allocating.
func remoteAddr(ctx *fasthttp.RequestCtx) netip.Addr {
	a, _ := netip.AddrFromSlice(ctx.RemoteIP())
	return a.Unmap()
}
