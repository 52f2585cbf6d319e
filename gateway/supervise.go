package gateway

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// every runs round in its own goroutine after each wait that next gives,
// until ctx ends (the config unloads); Stop waits for it. A panic in one
// round is logged and the loop goes on. All of the app's background work
// (store checks, hold sweeper, settlement spool, shared health, Lago,
// health probes) runs this way.
func (a *App) every(ctx context.Context, name string, next func() time.Duration, round func(context.Context)) {
	a.probes.Add(1)
	go func() {
		defer a.probes.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(next()):
			}
			func() {
				defer func() {
					if r := recover(); r != nil {
						a.logger.Error("background round panicked", zap.String("loop", name), zap.Any("panic", r))
					}
				}()
				round(ctx)
			}()
		}
	}()
}

// fixed is a constant interval for every.
func fixed(d time.Duration) func() time.Duration { return func() time.Duration { return d } }
