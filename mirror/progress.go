package mirror

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"go.mongodb.org/mongo-driver/v2/mongo"
	"go.uber.org/zap"
)

// progressEvery is how often a long sync logs its progress.
const progressEvery = 5 * time.Second

// progress reports one collection's initial sync: a log line with counts
// and rate every few seconds, and a bar on a terminal. Not safe for
// concurrent use.
type progress struct {
	log        *zap.Logger
	bar        io.Writer // nil: no bar
	collection string
	total      int64 // estimated; 0 when unknown
	docs       int64
	began      time.Time
	lastLog    time.Time
	lastBar    time.Time
}

// newProgress starts reporting on coll. Only a bar needs the estimated
// total: counting is metadata on MongoDB but can be slow elsewhere.
func (m *mirror) newProgress(ctx context.Context, coll *mongo.Collection) *progress {
	var total int64
	if m.bar != nil {
		total, _ = coll.EstimatedDocumentCount(ctx)
	}
	now := time.Now()
	return &progress{log: m.log, bar: m.bar, collection: coll.Name(), total: total, began: now, lastLog: now}
}

func (p *progress) rate() float64 {
	return float64(p.docs) / max(time.Since(p.began).Seconds(), 1e-3)
}

// add counts n more documents read.
func (p *progress) add(n int) {
	p.docs += int64(n)
	if p.docs%256 != 0 {
		return // time.Now is not free at this rate
	}
	now := time.Now()
	if now.Sub(p.lastLog) >= progressEvery {
		p.lastLog = now
		p.log.Info("sync progress", zap.String("collection", p.collection),
			zap.Int64("docs", p.docs),
			zap.Float64("docs_per_second", p.rate()))
	}
	if p.bar != nil && now.Sub(p.lastBar) >= 200*time.Millisecond {
		p.lastBar = now
		p.drawBar()
	}
}

func (p *progress) drawBar() {
	const width = 30
	filled := 0
	pct := 0.0
	if p.total > 0 {
		pct = min(100, 100*float64(p.docs)/float64(p.total))
		filled = int(pct / 100 * width)
	}
	fmt.Fprintf(p.bar, "\r%-20s [%s%s] %5.1f%% %d docs %.0f/s ", p.collection,
		strings.Repeat("=", filled), strings.Repeat(" ", width-filled), pct, p.docs, p.rate())
}

// done logs the collection's totals and ends the bar's line.
func (p *progress) done() {
	if p.bar != nil {
		p.drawBar()
		fmt.Fprintln(p.bar)
	}
	p.log.Info("sync collection done", zap.String("collection", p.collection),
		zap.Int64("docs", p.docs), zap.Duration("elapsed", time.Since(p.began)),
		zap.Float64("docs_per_second", p.rate()))
}
