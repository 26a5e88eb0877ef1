package redisstore

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// SetLogger routes go-redis's own messages (dial failures, Sentinel master
// changes, Cluster topology) through log, as warnings of the "redis"
// logger, instead of the plain-text lines go-redis writes to stderr by
// default, which break a JSON log stream. go-redis logs one line per failed
// dial, so the lines are sampled: the first 5 a second, then one in 100.
// go-redis has one logger per process; call SetLogger once, from main.
func SetLogger(log *zap.Logger) {
	sampled := log.Named("redis").WithOptions(zap.WrapCore(func(c zapcore.Core) zapcore.Core {
		return zapcore.NewSamplerWithOptions(c, time.Second, 5, 100)
	}))
	redis.SetLogger(zapLogging{sampled})
}

// zapLogging adapts a zap logger to go-redis's Logging interface.
type zapLogging struct{ log *zap.Logger }

func (l zapLogging) Printf(_ context.Context, format string, v ...any) {
	l.log.Warn("redis client", zap.String("message", strings.TrimSpace(fmt.Sprintf(format, v...))))
}
