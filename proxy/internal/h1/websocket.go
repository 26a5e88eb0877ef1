package h1

import "github.com/valyala/fasthttp"

// IsWebSocketUpgrade reports whether the request opens a WebSocket
// (RFC 6455 §4.1): method GET, one Upgrade header whose value is exactly
// the token "websocket", a Connection header holding "upgrade", names and
// tokens case-insensitive, and no request body. Anything else — a POST that
// asks for an upgrade, "Upgrade: h2c, websocket", two Upgrade fields — is
// forwarded as a plain request, and the forwarder drops its Upgrade header
// as hop-by-hop (docs/forwarding.md: only WebSocket upgrades are forwarded; a list
// would let the upstream switch to a protocol the tunnel was not meant
// for). It runs on every request, so it does not allocate.
func IsWebSocketUpgrade(h *fasthttp.RequestHeader) bool {
	if !h.IsGet() || h.ContentLength() > 0 || h.ContentLength() == -1 {
		return false
	}
	upgrades, websocket, connection := 0, false, false
	raw := h.RawHeaders()
	if len(raw) == 0 {
		// Not parsed from the wire (an in-process request): fall back to
		// the exact-case names clients send.
		return EqualFoldASCII(TrimFieldValue(h.Peek("Upgrade")), "websocket") &&
			HasToken(h.Peek("Connection"), "upgrade")
	}
	// With DisableHeaderNamesNormalizing, Peek matches names exactly, and a
	// client may send "upgrade:"; the raw header block has every name as
	// sent. No whitespace may precede the colon (RFC 9112 §5.1; fasthttp
	// rejects it), so only lines with a colon right after 7 or 10 bytes can
	// matter, and the rest are skipped after one look.
	for len(raw) > 0 {
		var line []byte
		line, raw = NextLine(raw)
		switch {
		case len(line) > 7 && line[7] == ':' && EqualFoldASCII(line[:7], "upgrade"):
			upgrades++
			websocket = EqualFoldASCII(TrimFieldValue(line[8:]), "websocket")
		case len(line) > 10 && line[10] == ':' && EqualFoldASCII(line[:10], "connection"):
			connection = connection || HasToken(line[11:], "upgrade")
		}
	}
	return upgrades == 1 && websocket && connection
}
