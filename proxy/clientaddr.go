package proxy

import (
	"bytes"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// Client address (SPEC §4). Rocket.Chat trusts X-Real-IP blindly for rate
// limits and session.ip, so a client's own value is replaced by the
// connecting peer's address, and that address is appended to
// X-Forwarded-For, unless the peer is a trusted proxy (proxy.trusted_proxies)
// whose headers are passed on as they are. X-Forwarded-Proto and
// X-Forwarded-Host are set only when absent (appendRequestHead).

// isTrusted reports whether peer is in proxy.trusted_proxies.
func (p *Proxy) isTrusted(peer netip.Addr) bool {
	for _, pfx := range p.trusted {
		if pfx.Contains(peer) {
			return true
		}
	}
	return false
}

// appendClientAddr appends X-Real-IP and X-Forwarded-For for an untrusted
// peer. raw, when not nil, is the client's header block: its X-Forwarded-For
// values are kept, in order and combined into one field (RFC 9110 §5.3),
// before the peer's address.
func appendClientAddr(dst []byte, peer netip.Addr, raw []byte) []byte {
	dst = append(dst, "X-Real-IP: "...)
	dst = peer.AppendTo(dst)
	dst = append(dst, "\r\nX-Forwarded-For: "...)
	if raw != nil {
		forEachField(raw, func(name, value []byte) {
			if len(value) > 0 && classifyField(name) == fieldXForwardedFor {
				dst = append(dst, value...)
				dst = append(dst, ", "...)
			}
		})
	}
	dst = peer.AppendTo(dst)
	return append(dst, "\r\n"...)
}

// setClientAddr sets the client-address headers on ctx's parsed request
// header, for code that forwards the parsed header rather than the raw block
// (websocket.go). It first deletes every spelling of the fields it sets,
// since with DisableHeaderNamesNormalizing fasthttp's Set only replaces an
// exact-case match. Call it after removeHopByHopRequest, so a client's
// "Connection: X-Real-IP" cannot remove what it sets.
func (p *Proxy) setClientAddr(ctx *fasthttp.RequestCtx) {
	h := &ctx.Request.Header
	peer := remoteAddr(ctx)
	raw := h.RawHeaders()
	var sawXFP, sawXFH bool
	var host []byte
	var del [][]byte
	trusted := p.isTrusted(peer)
	forEachField(raw, func(name, value []byte) {
		switch classifyField(name) {
		case fieldXRealIP, fieldXForwardedFor:
			if !trusted {
				del = append(del, name)
			}
		case fieldXForwardedProto:
			sawXFP = true
		case fieldXForwardedHost:
			sawXFH = true
		case fieldHost:
			host = value
		}
	})
	if !trusted {
		var b []byte
		forEachField(raw, func(name, value []byte) {
			if len(value) > 0 && classifyField(name) == fieldXForwardedFor {
				b = append(b, value...)
				b = append(b, ", "...)
			}
		})
		for _, name := range del {
			h.DelBytes(name)
		}
		dropConnectionTokens(h, raw)
		ip := peer.AppendTo(nil)
		h.SetBytesV("X-Real-IP", ip)
		h.SetBytesV("X-Forwarded-For", append(b, ip...))
	}
	if !sawXFP {
		if ctx.IsTLS() {
			h.Set("X-Forwarded-Proto", "https")
		} else {
			h.Set("X-Forwarded-Proto", "http")
		}
	}
	if !sawXFH && len(host) > 0 {
		h.SetBytesV("X-Forwarded-Host", bytes.Clone(host))
	}
}

// dropConnectionTokens removes from h's Connection headers the tokens that
// name client-address fields, so code that later strips the fields a
// Connection header names cannot strip the values setClientAddr sets.
func dropConnectionTokens(h *fasthttp.RequestHeader, raw []byte) {
	type field struct{ name, value []byte }
	var rewrite []field
	forEachField(raw, func(name, value []byte) {
		if classifyField(name) != fieldConnection {
			return
		}
		var kept []byte
		changed := false
		var toks connTokens
		toks.add(value)
		for i := 0; i < toks.n; i++ {
			switch classifyField(toks.inline[i]) {
			case fieldXRealIP, fieldXForwardedFor, fieldXForwardedProto, fieldXForwardedHost:
				changed = true
				continue
			}
			if len(kept) > 0 {
				kept = append(kept, ", "...)
			}
			kept = append(kept, toks.inline[i]...)
		}
		for _, tok := range toks.more {
			kept = append(append(kept, ", "...), tok...)
		}
		if changed {
			rewrite = append(rewrite, field{name, kept})
		}
	})
	for _, f := range rewrite {
		h.DelBytes(f.name)
	}
	for _, f := range rewrite {
		if len(f.value) > 0 {
			h.AddBytesKV(f.name, f.value)
		}
	}
}
