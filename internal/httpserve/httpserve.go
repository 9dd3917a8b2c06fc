// Package httpserve runs an HTTP server for the lifetime of a context and
// shuts it down gracefully, the same way in every binary. It also bounds
// what one client can hold: header, idle and connection timeouts, a cap on
// the connections of one client address (limit.go) and, for streaming
// services, the kernel send buffer of every connection, whose unsent bytes
// a handler can read (Unsent) to tell a client that stopped reading.
package httpserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Options bound a server's connections. The zero value of every field is
// a working default.
type Options struct {
	// Grace bounds how long open requests may finish after ctx ends (long
	// streams are cut then). Default 10s.
	Grace time.Duration
	// ReadHeaderTimeout bounds reading a request's headers. Default 10s.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a kept-alive connection that sends no new request
	// for this long. Default 2m.
	IdleTimeout time.Duration
	// MaxConnsPerAddr caps the open connections of one client IP address;
	// beyond it a new connection is closed as soon as it is accepted
	// (refused). 0: no cap.
	MaxConnsPerAddr int
	// SendBuffer, when positive, sets the kernel send buffer (SO_SNDBUF) of
	// every accepted TCP connection, so a client that stops reading holds
	// at most about that much kernel memory (Linux doubles the value for
	// its bookkeeping). 0: the system's default, which grows to
	// net.ipv4.tcp_wmem's maximum (4 MiB on most Linux systems).
	SendBuffer int
}

func (o *Options) setDefaults() {
	if o.Grace == 0 {
		o.Grace = 10 * time.Second
	}
	if o.ReadHeaderTimeout == 0 {
		o.ReadHeaderTimeout = 10 * time.Second
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = 2 * time.Minute
	}
}

// Run serves h on ln until ctx is done, then stops accepting connections and
// waits up to grace for open requests (long-lived streams are cut at the
// end of grace). It returns nil after a clean shutdown.
func Run(ctx context.Context, ln net.Listener, h http.Handler, grace time.Duration, logger *slog.Logger) error {
	return Serve(ctx, ln, h, Options{Grace: grace}, logger)
}

// Serve is Run with every bound of Options. Handlers find their
// connection with Conn (and its unsent bytes with Unsent).
func Serve(ctx context.Context, ln net.Listener, h http.Handler, opts Options, logger *slog.Logger) error {
	opts.setDefaults()
	ln = Limit(ln, opts.MaxConnsPerAddr, opts.SendBuffer)
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: opts.ReadHeaderTimeout,
		IdleTimeout:       opts.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		// Requests outlive ctx by up to grace, so an accepted request can
		// finish; long-lived handlers watch their service's own context.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		ConnContext: withConn,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	logger.Info("http listening", "addr", ln.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("http serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.Grace)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
