package proxy

import (
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// newServer configures fasthttp for transparent proxying: header names keep
// their case, request bodies stream instead of being buffered, and no
// default headers are invented.
func (p *Proxy) newServer() *fasthttp.Server {
	return &fasthttp.Server{
		Handler:                       p.handle,
		NoDefaultServerHeader:         true,
		NoDefaultContentType:          true,
		DisableHeaderNamesNormalizing: true,
		DisablePreParseMultipartForm:  true,
		StreamRequestBody:             true,
		ReadBufferSize:                p.cfg.Proxy.MaxHeaderBytes,
		ReadTimeout:                   p.cfg.Proxy.ReadHeaderTimeout,
		IdleTimeout:                   p.cfg.Proxy.IdleTimeout,
		WriteTimeout:                  p.cfg.Proxy.WriteTimeout,
		Concurrency:                   p.cfg.Proxy.MaxConns,
		CloseOnShutdown:               true,
		Logger:                        zapPrintf{p.log},
	}
}

// zapPrintf adapts fasthttp's Printf logger to zap at debug level: fasthttp
// logs client mistakes (bad requests, timeouts) that are not ours to alarm on.
type zapPrintf struct{ log *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.log.Sugar().Debugf(format, args...)
}
