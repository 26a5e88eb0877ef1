package proxy

import (
	"net/netip"
)

// Client address (docs/forwarding.md). Rocket.Chat trusts X-Real-IP blindly for rate
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
