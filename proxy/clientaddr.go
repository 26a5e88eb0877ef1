package proxy

import (
	"net/netip"

	"github.com/valyala/fasthttp"
)

// setClientAddr sets X-Real-IP and X-Forwarded-* for the upstream (SPEC §4).
// Rocket.Chat trusts X-Real-IP blindly for rate limits and session.ip, so a
// client's own value is overwritten unless the peer is a trusted proxy.
func (p *Proxy) setClientAddr(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	peer, _ := netip.AddrFromSlice(ctx.RemoteIP())
	peer = peer.Unmap()
	if p.isTrusted(peer) {
		return
	}
	ip := peer.String()
	h.Set("X-Real-IP", ip)
	if prior := h.Peek("X-Forwarded-For"); len(prior) > 0 {
		h.Set("X-Forwarded-For", string(prior)+", "+ip)
	} else {
		h.Set("X-Forwarded-For", ip)
	}
	if len(h.Peek("X-Forwarded-Proto")) == 0 {
		if ctx.IsTLS() {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if len(h.Peek("X-Forwarded-Host")) == 0 {
		h.SetBytesV("X-Forwarded-Host", h.Host())
	}
}

func (p *Proxy) isTrusted(a netip.Addr) bool {
	for _, pfx := range p.trusted {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}
