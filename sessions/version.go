package sessions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// VersionAuto is the Version that asks the upstream.
const VersionAuto = "auto"

// VersionOptions configures a VersionWatcher.
type VersionOptions struct {
	// Version is VersionAuto or a Rocket.Chat version such as "6.12.0".
	// Required.
	Version string
	// Fallback is the version assumed while an auto upstream does not
	// report its own. Default DefaultVersion.
	Fallback string
	// Upstream is the Rocket.Chat server's base URL; auto asks its
	// GET /api/info. Required for auto.
	Upstream string
	// Every is how often auto asks again. Default 5m.
	Every time.Duration
	// Client asks the upstream. Default: a client with a 5s timeout.
	Client *http.Client
	// Log receives the version and era in force whenever they change.
	// Default: none.
	Log *zap.Logger
	// Registerer receives sessiongate_upstream_info. Default: none.
	Registerer prometheus.Registerer
}

// VersionWatcher keeps a Handler's era in step with the upstream's
// Rocket.Chat version (docs/eras.md), and shows the version in force in
// the log and as sessiongate_upstream_info{version,era,source}.
type VersionWatcher struct {
	h    *Handler
	opts VersionOptions
	info *prometheus.GaugeVec
	last string // version, era and source last reported
}

// NewVersionWatcher builds a watcher for h. With a fixed version it sets h's
// era at once; with VersionAuto, h follows the fallback until Run has
// asked the upstream.
func NewVersionWatcher(h *Handler, opts VersionOptions) (*VersionWatcher, error) {
	if opts.Fallback == "" {
		opts.Fallback = DefaultVersion
	}
	if opts.Every <= 0 {
		opts.Every = 5 * time.Minute
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 5 * time.Second}
	}
	if opts.Log == nil {
		opts.Log = zap.NewNop()
	}
	opts.Log = opts.Log.Named("sessions")
	w := &VersionWatcher{h: h, opts: opts}
	w.info = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "sessiongate_upstream_info",
		Help: "The upstream's Rocket.Chat version and era the route follows (value 1); source: upstream, fallback or configured.",
	}, []string{"version", "era", "source"})
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(w.info); err != nil {
			return nil, err
		}
	}
	switch {
	case opts.Version == VersionAuto:
		if _, err := eraOf(opts.Fallback); err != nil {
			return nil, err
		}
		if opts.Upstream == "" {
			return nil, errors.New("sessions: rocketchat version auto needs the upstream URL")
		}
		w.apply(opts.Fallback, "fallback", nil)
	default:
		if _, err := eraOf(opts.Version); err != nil {
			return nil, err
		}
		w.apply(opts.Version, "configured", nil)
	}
	return w, nil
}

// Run asks the upstream its version now and every Every until ctx ends;
// with a fixed version it returns at once.
func (w *VersionWatcher) Run(ctx context.Context) {
	if w.opts.Version != VersionAuto {
		return
	}
	t := time.NewTicker(w.opts.Every)
	defer t.Stop()
	for {
		w.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check asks the upstream once and applies its answer: its version, or
// the fallback when it does not tell or cannot be asked.
func (w *VersionWatcher) Check(ctx context.Context) {
	v, err := UpstreamVersion(ctx, w.opts.Client, w.opts.Upstream)
	if err != nil || v == "" {
		w.apply(w.opts.Fallback, "fallback", err)
		return
	}
	if _, err := eraOf(v); err != nil {
		w.apply(w.opts.Fallback, "fallback", err)
		return
	}
	w.apply(v, "upstream", nil)
}

// apply switches the handler to version's era, updates the metric and logs
// when anything changed.
func (w *VersionWatcher) apply(version, source string, why error) {
	name, err := w.h.SetVersion(version)
	if err != nil {
		return // checked by the callers
	}
	key := version + " " + name + " " + source
	if key == w.last {
		return
	}
	w.last = key
	w.info.Reset()
	w.info.WithLabelValues(version, name, source).Set(1)
	fields := []zap.Field{zap.String("version", version), zap.String("era", name), zap.String("source", source)}
	if source == "fallback" && w.opts.Version == VersionAuto {
		if why != nil {
			fields = append(fields, zap.NamedError("reason", why))
		} else {
			fields = append(fields, zap.String("reason", "the upstream does not report its version"))
		}
		w.opts.Log.Warn("rocketchat version not known, using the fallback", fields...)
		return
	}
	w.opts.Log.Info("rocketchat version", fields...)
}

// maxInfoBytes bounds how much of /api/info's answer is read.
const maxInfoBytes = 64 << 10

// UpstreamVersion asks the Rocket.Chat server at upstream (a base URL) for
// its version with GET /api/info. It returns "" and no error when the
// server answers without one (servers can hide it from unauthenticated
// callers), and an error when it cannot be asked or the answer is not
// Rocket.Chat's JSON.
func UpstreamVersion(ctx context.Context, client *http.Client, upstream string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(upstream, "/")+"/api/info", nil)
	if err != nil {
		return "", fmt.Errorf("sessions: upstream info: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("sessions: upstream info: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("sessions: upstream info: status %d", resp.StatusCode)
	}
	var info struct {
		Version string `json:"version"`
		Info    struct {
			Version string `json:"version"`
		} `json:"info"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxInfoBytes)).Decode(&info); err != nil {
		return "", fmt.Errorf("sessions: upstream info: %w", err)
	}
	v := info.Version
	if v == "" {
		v = info.Info.Version
	}
	if !plausibleVersion(v) {
		return "", nil
	}
	return v, nil
}

// plausibleVersion keeps what the upstream says out of logs and metric
// labels unless it looks like a version.
func plausibleVersion(v string) bool {
	if v == "" || len(v) > 40 {
		return false
	}
	for _, c := range []byte(v) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c == '.' || c == '-' || c == '+') {
			return false
		}
	}
	_, _, ok := majorMinor(v)
	return ok
}
