// Package sessions answers GET /api/v1/sessions/info from the token and
// session data in a Store, with Rocket.Chat's exact statuses and bodies.
package sessions

import (
	"context"
	"errors"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
)

// ErrNotFound means the session does not exist for this user.
var ErrNotFound = errors.New("sessions: not found")

// Store answers the route's question in one round trip.
// FIRST DRAFT: to be finished by the route work.
type Store interface {
	Ping(ctx context.Context) error
}

// Options configures a Handler.
type Options struct {
	Store            Store
	OnError          string
	UnauthorizedBody string
	Log              *zap.Logger
	Registerer       prometheus.Registerer
}

// Handler serves the route.
type Handler struct{ opts Options }

// New builds a Handler.
func New(opts Options) (*Handler, error) { return &Handler{opts: opts}, nil }

// Serve answers the request, or returns false to have it forwarded.
func (h *Handler) Serve(ctx *fasthttp.RequestCtx) bool { return false }
