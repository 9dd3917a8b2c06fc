package egress

import (
	"context"
	"net/http"

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
	tenantName := ""
	if e.cfg.Tenants != nil {
		var key string
		if md, ok := metadata.FromIncomingContext(ctx); ok {
			if v := md.Get("authorization"); len(v) > 0 {
				key = tenant.BearerToken(v[0])
			}
		}
		t, err := e.cfg.Tenants.Authenticate(key)
		if err != nil {
			e.metrics.authFailed.Inc()
			return status.Error(codes.Unauthenticated, "a valid API key is required (metadata authorization: Bearer KEY)")
		}
		tenantName = t.Name
	}
	s, aerr := e.open(ctx, subRequest{tenant: tenantName, conv: req.GetConversationId(), from: req.GetFrom(), until: req.GetRequestId()})
	if aerr != nil {
		code := codes.InvalidArgument
		if aerr.status == http.StatusServiceUnavailable {
			code = codes.Unavailable
		}
		return status.Error(code, aerr.Error())
	}
	defer s.close()
	e.metrics.subscribers.WithLabelValues("grpc").Inc()
	defer e.metrics.subscribers.WithLabelValues("grpc").Dec()
	return s.run(ctx, &grpcSink{stream: stream})
}

// grpcSink sends SubscribeResponse messages.
type grpcSink struct {
	stream grpc.ServerStreamingServer[pb.SubscribeResponse]
}

func (s *grpcSink) event(c cursor, _ string, ev event) error {
	return s.stream.Send(&pb.SubscribeResponse{Cursor: c.String(), Event: &pb.SubscribeResponse_Result{Result: ev.res}})
}

func (s *grpcSink) end(reason string, c cursor) error {
	return s.stream.Send(&pb.SubscribeResponse{Cursor: c.String(),
		Event: &pb.SubscribeResponse_End{End: &pb.End{Reason: reason, Cursor: c.String()}}})
}

// keepAlive: HTTP/2 keepalives do this job for gRPC.
func (s *grpcSink) keepAlive(context.Context) error { return nil }
