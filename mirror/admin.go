package mirror

import (
	"context"

	"github.com/sessiongate/sessiongate/admin"
)

// Readiness is the mirror's answer to the admin listener's /readyz: ready
// once the initial sync is done and the mirror follows MongoDB (its last
// heartbeat is at most mirror.max_lag, or 10s, old), with the way it
// follows (mode) and, when not ready, the reason. Safe for concurrent use.
func (mr *Mirror) Readiness(ctx context.Context) admin.Report {
	rep := admin.Report{Ready: true}
	rep.Mode, _ = mr.m.metrics.mode.Load().(string)
	if err := mr.Ready(ctx); err != nil {
		rep.Ready, rep.Reason = false, err.Error()
	}
	return rep
}
