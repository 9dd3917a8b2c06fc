package devbroker

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/twmb/franz-go/pkg/kfake"
)

// kfakeLogger adapts slog to kfake's printf-style Logger.
type kfakeLogger struct{ l *slog.Logger }

// Logf implements kfake.Logger.
func (k kfakeLogger) Logf(level kfake.LogLevel, format string, args ...any) {
	lvl, ok := slogLevel(level)
	// kfake's Logger interface carries no context.
	ctx := context.Background()
	if !ok || !k.l.Enabled(ctx, lvl) {
		return
	}
	k.l.Log(ctx, lvl, fmt.Sprintf(format, args...))
}

// slogLevel maps a kfake level to the slog level it is logged at, and
// reports false for levels that are never logged.
func slogLevel(level kfake.LogLevel) (slog.Level, bool) {
	switch level {
	case kfake.LogLevelError:
		return slog.LevelError, true
	case kfake.LogLevelWarn:
		return slog.LevelWarn, true
	case kfake.LogLevelInfo:
		return slog.LevelDebug, true
	case kfake.LogLevelDebug:
		return slog.LevelDebug - 4, true
	default:
		return 0, false
	}
}
