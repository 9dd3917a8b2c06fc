package httpserve

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc"
)

// ServeGRPC serves srv on ln until ctx is done, then stops it gracefully:
// open calls and streams have grace to finish, then they are cut. Options'
// MaxConnsPerAddr caps one client address's connections as for HTTP (its
// other fields do not apply to gRPC). It returns nil after a stop, or
// Serve's error when serving fails.
func ServeGRPC(ctx context.Context, ln net.Listener, srv *grpc.Server, opts Options, logger *slog.Logger) error {
	opts.setDefaults()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(Limit(ln, opts.MaxConnsPerAddr, 0)) }()
	logger.Info("grpc listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("grpc serve: %w", err)
	case <-ctx.Done():
	}
	stopped := make(chan struct{})
	go func() { srv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(opts.Grace):
		srv.Stop()
		<-stopped
	}
	if err := <-errc; err != nil { // after a stop, Serve's error is the stop itself
		logger.Debug("grpc serve ended", "err", err)
	}
	return nil
}
