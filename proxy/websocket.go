package proxy

import (
	"context"
	"net/url"
	"sync/atomic"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/config"
)

// tunnels joins client and upstream WebSocket connections byte for byte.
// FIRST DRAFT: not implemented yet.
type tunnels struct {
	upstream *url.URL
	log      *zap.Logger
	metrics  *metrics
	open     atomic.Int64
}

func newTunnels(cfg *config.Upstream, upstream *url.URL, log *zap.Logger, m *metrics) *tunnels {
	return &tunnels{upstream: upstream, log: log, metrics: m}
}

func isWebSocketUpgrade(h *fasthttp.RequestHeader) bool {
	return false
}

func (t *tunnels) serve(ctx *fasthttp.RequestCtx, setClientAddr func(*fasthttp.RequestCtx)) {
	writeError(ctx, fasthttp.StatusBadGateway, bodyBadGateway)
}

func (t *tunnels) count() int { return int(t.open.Load()) }

func (t *tunnels) closeAll(ctx context.Context) error { return nil }
