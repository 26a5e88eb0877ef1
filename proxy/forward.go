package proxy

import (
	"errors"
	"net/url"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/sessiongate/sessiongate/config"
)

// forwarder sends requests to the upstream over a keep-alive pool.
// FIRST DRAFT: buffers bodies; to be replaced by a streaming forwarder.
type forwarder struct {
	upstream *url.URL
	client   *fasthttp.HostClient
	log      *zap.Logger
	metrics  *metrics
}

func newForwarder(cfg *config.Upstream, log *zap.Logger, m *metrics) (*forwarder, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return nil, err
	}
	return &forwarder{
		upstream: u,
		client: &fasthttp.HostClient{
			Addr:                          u.Host,
			IsTLS:                         u.Scheme == "https",
			DisableHeaderNamesNormalizing: true,
			DisablePathNormalizing:        true,
			MaxConns:                      cfg.MaxConns,
			MaxIdleConnDuration:           cfg.IdleConnTimeout,
			ReadTimeout:                   cfg.ResponseHeaderTimeout,
		},
		log:     log,
		metrics: m,
	}, nil
}

func (f *forwarder) serve(ctx *fasthttp.RequestCtx) {
	if err := f.client.Do(&ctx.Request, &ctx.Response); err != nil {
		ctx.Response.Reset()
		if errors.Is(err, fasthttp.ErrTimeout) {
			f.metrics.upstreamError("timeout")
			writeError(ctx, fasthttp.StatusGatewayTimeout, bodyGatewayTimeout)
			return
		}
		f.metrics.upstreamError("connect")
		writeError(ctx, fasthttp.StatusBadGateway, bodyBadGateway)
	}
}

func (f *forwarder) close() { f.client.CloseIdleConnections() }

var (
	bodyBadGateway     = []byte(`{"success":false,"error":"Bad gateway"}`)
	bodyGatewayTimeout = []byte(`{"success":false,"error":"Gateway timeout"}`)
)

// writeError answers with one of sessiongate's own JSON error bodies.
func writeError(ctx *fasthttp.RequestCtx, status int, body []byte) {
	ctx.Response.SetStatusCode(status)
	ctx.Response.Header.SetContentType("application/json")
	ctx.Response.SetBodyRaw(body)
}
