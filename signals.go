package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"
)

// notifyContext returns a context cancelled by the first SIGTERM or SIGINT,
// which starts the drain. A second signal during the drain (an impatient
// operator's Ctrl-C, an orchestrator that does not wait) ends the process
// at once through exit, with exitFailed: the drain was cut short. stop
// releases the signals.
func notifyContext(log *zap.Logger, exit func(int)) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			log.Info("signal received, draining (send it again to exit at once)", zap.String("signal", s.String()))
			cancel()
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			log.Warn("second signal: exiting without finishing the drain", zap.String("signal", s.String()))
			log.Sync()
			exit(exitFailed)
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel()
	}
}
