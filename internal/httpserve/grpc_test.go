package httpserve

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// TestServeGRPC: ServeGRPC serves until ctx ends and then returns nil
// within the grace, cutting a stream that does not end by itself; a
// listener that fails makes it return the error at once.
func TestServeGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	healthpb.RegisterHealthServer(srv, health.NewServer())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- ServeGRPC(ctx, ln, srv, Options{Grace: 300 * time.Millisecond}, slog.New(slog.DiscardHandler))
	}()

	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	watch, err := healthpb.NewHealthClient(cc).Watch(t.Context(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil { // served; the watch stays open
		t.Fatal(err)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("after ctx ended: %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeGRPC did not return after its grace with a stream open")
	}

	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed.Close()
	if err := ServeGRPC(t.Context(), closed, grpc.NewServer(), Options{}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("serving on a closed listener returned nil")
	}
}
