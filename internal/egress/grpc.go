package egress

import (
	"context"
	"errors"
	"net/http"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/switchboard-llm/switchboard/internal/tenant"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// grpcServer implements switchboard.v1.Egress.
type grpcServer struct {
	pb.UnimplementedEgressServer
	e *Egress
}

// Subscribe serves one conversation's stream; see egress.proto.
func (g *grpcServer) Subscribe(req *pb.SubscribeRequest, stream grpc.ServerStreamingServer[pb.SubscribeResponse]) error {
	e := g.e
	ctx := stream.Context()
	tenantName, key := "", ""
	if e.tenants != nil {
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get("authorization"); len(v) > 0 {
				key = tenant.BearerToken(v[0])
			}
		}
		t, err := e.tenants.Set().Authenticate(key)
		if err != nil {
			e.metrics.authFailed.Inc()
			return status.Error(codes.Unauthenticated, "a valid API key is required (metadata authorization: Bearer KEY)")
		}
		tenantName = t.Name
	}
	s, aerr := e.open(ctx, subRequest{tenant: tenantName, cred: credential{key: key}, conv: req.GetConversationId(), from: req.GetFrom(), until: req.GetRequestId()})
	if aerr != nil {
		code := codes.InvalidArgument
		switch aerr.status {
		case http.StatusServiceUnavailable:
			code = codes.Unavailable
		case http.StatusTooManyRequests:
			code = codes.ResourceExhausted
		}
		return status.Error(code, aerr.Error())
	}
	defer s.close()
	// The headers tell the client the subscription is open (as SSE's 200
	// does) before any event, which may be long in coming.
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	e.metrics.subscribers.WithLabelValues("grpc").Inc()
	defer e.metrics.subscribers.WithLabelValues("grpc").Dec()
	out := newGRPCSink(stream, e.cfg.WriteTimeout)
	defer out.close()
	return s.run(ctx, out)
}

// grpcSink sends SubscribeResponse messages. grpc-go has no write
// deadline: a Send to a client that stops reading blocks on flow control
// until the stream ends. So one goroutine per stream sends, and each
// message waits for it at most timeout; a send that times out ends the
// session, whose handler then returns, which cancels the stream and
// unblocks the goroutine (close waits for nothing: the goroutine exits on
// its own once the stream is cancelled).
type grpcSink struct {
	stream  grpc.ServerStreamingServer[pb.SubscribeResponse]
	timeout time.Duration
	out     chan *pb.SubscribeResponse
	errc    chan error // buffered 1: a result nobody waits for never blocks
}

func newGRPCSink(stream grpc.ServerStreamingServer[pb.SubscribeResponse], timeout time.Duration) *grpcSink {
	s := &grpcSink{stream: stream, timeout: timeout, out: make(chan *pb.SubscribeResponse), errc: make(chan error, 1)}
	go func() {
		for msg := range s.out {
			s.errc <- s.stream.Send(msg)
		}
	}()
	return s
}

// send hands msg to the sending goroutine and waits for its result, each
// at most timeout.
func (s *grpcSink) send(msg *pb.SubscribeResponse) error {
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case s.out <- msg:
	case <-t.C:
		return errGRPCStalled
	}
	select {
	case err := <-s.errc:
		return err
	case <-t.C:
		return errGRPCStalled
	}
}

// close stops the sending goroutine once its current send returns.
func (s *grpcSink) close() { close(s.out) }

var errGRPCStalled = errors.New("the client did not take a message within the write timeout")

func (s *grpcSink) event(cur string, _ string, ev event, v view) error {
	return s.send(&pb.SubscribeResponse{Cursor: cur, Event: &pb.SubscribeResponse_Answer{Answer: answerOf(ev.res, v)}})
}

func (s *grpcSink) restart(r *pb.Restart) error {
	return s.send(&pb.SubscribeResponse{Event: &pb.SubscribeResponse_Restart{Restart: r}})
}

func (s *grpcSink) end(reason string, cur string) error {
	return s.send(&pb.SubscribeResponse{Cursor: cur,
		Event: &pb.SubscribeResponse_End{End: &pb.End{Reason: reason, Cursor: cur}}})
}

// keepAlive: HTTP/2 keepalives do this job for gRPC.
func (s *grpcSink) keepAlive(context.Context) error { return nil }
