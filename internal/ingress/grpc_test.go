package ingress

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	rpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func grpcClient(t *testing.T, in *Ingress) *grpc.ClientConn {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = in.grpc.Serve(ln) }() // ends with Stop at cleanup
	t.Cleanup(in.grpc.Stop)
	cc, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func withKey(ctx context.Context, key string) context.Context {
	return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+key)
}

func TestGRPCSubmit(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	cl := pb.NewIngressClient(grpcClient(t, in))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req := &pb.SubmitRequest{ConversationId: "g1", Model: "sim", Lane: "batch", IdempotencyKey: "k1",
		Messages: []*pb.Message{{Role: "user", Content: "hi"}}}

	if _, err := cl.Submit(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("without a key: %v, want UNAUTHENTICATED", err)
	}
	res, err := cl.Submit(withKey(ctx, devKey), req)
	if err != nil {
		t.Fatal(err)
	}
	a := res.GetAck()
	if a.GetConversationId() != "g1" || a.GetLane() != "batch" || a.GetRequestId() != RequestIDForKey("dev", "k1") {
		t.Errorf("ack = %v", a)
	}
	again, err := cl.Submit(withKey(ctx, devKey), req)
	if err != nil || again.GetAck().GetOffset() != a.GetOffset() || again.GetAck().GetPartition() != a.GetPartition() {
		t.Errorf("repeat with the same idempotency key = %v, %v; want the first ack", again, err)
	}

	bad := &pb.SubmitRequest{ConversationId: "g1", Model: "sim", Messages: []*pb.Message{{Role: "robot", Content: "hi"}}}
	_, err = cl.Submit(withKey(ctx, devKey), bad)
	st := status.Convert(err)
	var field, reason string
	for _, d := range st.Details() {
		switch d := d.(type) {
		case *errdetails.BadRequest:
			field = d.GetFieldViolations()[0].GetField()
		case *errdetails.ErrorInfo:
			reason = d.GetReason()
		}
	}
	if st.Code() != codes.InvalidArgument || field != "messages[0].role" || reason != "invalid_request" {
		t.Errorf("invalid request: %v (field %q reason %q), want INVALID_ARGUMENT on messages[0].role", err, field, reason)
	}
	if _, err := cl.Submit(withKey(ctx, limitedKey), &pb.SubmitRequest{ConversationId: "g", Model: "sim",
		Messages: []*pb.Message{{Role: "user", Content: "hi"}}}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("lane not allowed: %v, want PERMISSION_DENIED", err)
	}
}

func TestGRPCSubmitStream(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	cl := pb.NewIngressClient(grpcClient(t, in))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	stream, err := cl.SubmitStream(withKey(ctx, devKey))
	if err != nil {
		t.Fatal(err)
	}
	const n = 50
	for i := range n {
		role := "user"
		if i%10 == 9 {
			role = "robot"
		}
		if err := stream.Send(&pb.SubmitStreamRequest{CorrelationId: fmt.Sprint(i), Request: &pb.SubmitRequest{
			ConversationId: fmt.Sprintf("gs-%d", i%5), Model: "sim", Messages: []*pb.Message{{Role: role, Content: "hi"}}}}); err != nil {
			t.Fatal(err)
		}
	}
	_ = stream.CloseSend()
	seen := map[string]bool{}
	acks, failures := 0, 0
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if seen[m.GetCorrelationId()] {
			t.Fatalf("answer %s twice", m.GetCorrelationId())
		}
		seen[m.GetCorrelationId()] = true
		var i int
		if _, err := fmt.Sscan(m.GetCorrelationId(), &i); err != nil {
			t.Fatalf("correlation id %q: %v", m.GetCorrelationId(), err)
		}
		if f := m.GetFailure(); f != nil {
			failures++
			if i%10 != 9 || f.GetField() != "messages[0].role" || f.GetStatus() != 400 {
				t.Errorf("request %d failed: %v", i, f)
			}
		} else {
			acks++
			if i%10 == 9 || m.GetAck().GetConversationId() != fmt.Sprintf("gs-%d", i%5) {
				t.Errorf("request %d: ack %v", i, m.GetAck())
			}
		}
	}
	if acks != 45 || failures != 5 {
		t.Errorf("%d acks and %d failures, want 45 and 5", acks, failures)
	}
}

// TestGRPCReflection lists the services as grpcurl does.
func TestGRPCReflection(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	rc := rpb.NewServerReflectionClient(grpcClient(t, in))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	s, err := rc.ServerReflectionInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&rpb.ServerReflectionRequest{MessageRequest: &rpb.ServerReflectionRequest_ListServices{}}); err != nil {
		t.Fatal(err)
	}
	res, err := s.Recv()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, svc := range res.GetListServicesResponse().GetService() {
		found = found || svc.GetName() == "switchboard.v1.Ingress"
	}
	if !found {
		t.Errorf("reflection lists %v, want switchboard.v1.Ingress", res.GetListServicesResponse().GetService())
	}
	_ = s.CloseSend()
}

// TestGRPCStreamShutdown: a stop answers the stream's submits in flight,
// then ends the stream with UNAVAILABLE, and Run returns.
func TestGRPCStreamShutdown(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) { c.Addr = freeAddr(t); c.GRPCAddr = freeAddr(t) })
	r := runIngress(t, in)
	cc, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	stream, err := pb.NewIngressClient(cc).SubmitStream(withKey(ctx, devKey))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		_ = stream.Send(&pb.SubmitStreamRequest{CorrelationId: fmt.Sprint(i), Request: &pb.SubmitRequest{
			ConversationId: "c", Model: "sim", Messages: []*pb.Message{{Role: "user", Content: "hi"}}}})
	}
	if m, err := stream.Recv(); err != nil || m.GetAck() == nil {
		t.Fatalf("first answer: %v %v", m, err)
	}
	stopped := make(chan error, 1)
	go func() { stopped <- r.stop() }()
	answers := 1
	for {
		m, err := stream.Recv()
		if err != nil {
			if status.Code(err) != codes.Unavailable {
				t.Errorf("stream ended with %v, want UNAVAILABLE", err)
			}
			break
		}
		if m.GetAck() == nil {
			t.Errorf("answer during shutdown: %v", m)
		}
		answers++
	}
	if answers > 10 {
		t.Errorf("%d answers to 10 requests", answers)
	}
	if err := <-stopped; err != nil {
		t.Errorf("Run: %v", err)
	}
}

// TestGRPCTenantCallCap: gRPC calls count against MaxConnsPerTenant like
// HTTP requests: with two SubmitStreams of a tenant open, its third call
// is refused with RESOURCE_EXHAUSTED too_many_connections, another tenant
// is not, and a slot comes back when a stream ends.
func TestGRPCTenantCallCap(t *testing.T) {
	in := newIngress(t, newCluster(t), func(c *Config) { c.MaxConnsPerTenant = 2 })
	cl := pb.NewIngressClient(grpcClient(t, in))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req := &pb.SubmitRequest{ConversationId: "cap", Model: "sim", Messages: []*pb.Message{{Role: "user", Content: "hi"}}}
	var streams []grpc.BidiStreamingClient[pb.SubmitStreamRequest, pb.SubmitStreamResponse]
	for i := range 2 {
		s, err := cl.SubmitStream(withKey(ctx, devKey))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send(&pb.SubmitStreamRequest{CorrelationId: fmt.Sprint(i), Request: req}); err != nil {
			t.Fatal(err)
		}
		if m, err := s.Recv(); err != nil || m.GetAck() == nil { // the stream holds its slot
			t.Fatalf("stream %d: %v %v", i, m, err)
		}
		streams = append(streams, s)
	}
	reason := func(err error) string {
		for _, d := range status.Convert(err).Details() {
			if info, ok := d.(*errdetails.ErrorInfo); ok {
				return info.GetReason()
			}
		}
		return ""
	}
	_, err := cl.Submit(withKey(ctx, devKey), req)
	if status.Code(err) != codes.ResourceExhausted || reason(err) != "too_many_connections" {
		t.Errorf("a third call of the tenant: %v, want RESOURCE_EXHAUSTED too_many_connections", err)
	}
	sctx, scancel := context.WithTimeout(ctx, 3*time.Second)
	defer scancel()
	s, err := cl.SubmitStream(withKey(sctx, devKey))
	if err == nil {
		_, err = s.Recv()
	}
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a third stream of the tenant: %v, want RESOURCE_EXHAUSTED", err)
	}
	if _, err := cl.Submit(withKey(ctx, limitedKey), req); status.Code(err) != codes.PermissionDenied {
		t.Errorf("another tenant's call: %v, want its own answer (PERMISSION_DENIED for its lane), not the cap", err)
	}
	if _, err := cl.Submit(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("a call without a key: %v, want UNAUTHENTICATED", err)
	}
	// Ending a stream gives its slot back.
	_ = streams[0].CloseSend()
	for {
		if _, err := streams[0].Recv(); err != nil {
			break
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := cl.Submit(withKey(ctx, devKey), req)
		if err == nil {
			break
		}
		if status.Code(err) != codes.ResourceExhausted || time.Now().After(deadline) {
			t.Fatalf("after a stream ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
