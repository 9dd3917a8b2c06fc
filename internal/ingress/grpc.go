package ingress

import (
	"context"
	"net/http"
	"sync"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/protoadapt"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/switchboard-llm/switchboard/internal/tenant"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// grpcServer adapts switchboard.v1.Ingress (proto/switchboard/v1/ingress.proto)
// to submit.
type grpcServer struct {
	pb.UnimplementedIngressServer
	in *Ingress
}

// grpcAuthorization is the call's authorization metadata, "" if none.
func grpcAuthorization(ctx context.Context) string {
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// authenticate finds the call's tenant (grpcGuardUnary and
// grpcGuardStream have already refused a call without a valid key; this
// is one digest).
func (g *grpcServer) authenticate(ctx context.Context) (*tenant.Tenant, error) {
	t, f := g.in.authenticate(grpcAuthorization(ctx))
	if f != nil {
		g.in.reject("grpc", f)
		return nil, grpcStatus(f)
	}
	return t, nil
}

func fromProto(r *pb.SubmitRequest) (conv, key string, body messageBody) {
	body = messageBody{
		Model:       r.GetModel(),
		Stream:      r.GetStream(),
		Lane:        r.GetLane(),
		MaxTokens:   r.GetMaxTokens(),
		Temperature: r.Temperature,
		TimeoutMS:   r.GetTimeoutMs(),
		Metadata:    r.GetMetadata(),
		WebhookURL:  r.GetWebhookUrl(),
		Memory:      r.Memory,
	}
	for _, m := range r.GetMessages() {
		body.Messages = append(body.Messages, messageJSON{Role: m.GetRole(), Content: m.GetContent()})
	}
	return r.GetConversationId(), r.GetIdempotencyKey(), body
}

func toProto(a ack) *pb.Ack {
	pa := &pb.Ack{RequestId: a.RequestID, ConversationId: a.ConversationID, Lane: a.Lane}
	if !a.hidePositions {
		pa.Partition, pa.Offset = &a.Partition, &a.Offset
	}
	return pa
}

// grpcCode maps an HTTP status of a failure to its gRPC code.
func grpcCode(httpStatus int) codes.Code {
	switch httpStatus {
	case http.StatusBadRequest, http.StatusUnsupportedMediaType:
		return codes.InvalidArgument
	case http.StatusUnauthorized:
		return codes.Unauthenticated
	case http.StatusForbidden:
		return codes.PermissionDenied
	case http.StatusRequestEntityTooLarge, http.StatusTooManyRequests:
		return codes.ResourceExhausted
	case http.StatusConflict:
		return codes.Aborted
	case http.StatusUnprocessableEntity:
		return codes.FailedPrecondition
	case http.StatusServiceUnavailable:
		return codes.Unavailable
	default:
		return codes.Internal
	}
}

// grpcStatus turns a failure into a status with ErrorInfo, BadRequest and
// RetryInfo details.
func grpcStatus(f *failure) error {
	st := status.New(grpcCode(f.status), f.message)
	details := []protoadapt.MessageV1{&errdetails.ErrorInfo{Reason: f.code, Domain: "switchboard"}}
	if f.field != "" {
		details = append(details, &errdetails.BadRequest{FieldViolations: []*errdetails.BadRequest_FieldViolation{{Field: f.field, Description: f.message}}})
	}
	if f.retryAfter > 0 {
		details = append(details, &errdetails.RetryInfo{RetryDelay: durationpb.New(f.retryAfter)})
	}
	if withDetails, err := st.WithDetails(details...); err == nil {
		st = withDetails
	}
	return st.Err()
}

// Submit implements the unary RPC.
func (g *grpcServer) Submit(ctx context.Context, r *pb.SubmitRequest) (*pb.SubmitResponse, error) {
	t, err := g.authenticate(ctx)
	if err != nil {
		return nil, err
	}
	conv, key, body := fromProto(r)
	a, f := g.in.submit(ctx, submission{protocol: "grpc", tenant: t, conversationID: conv, idempotencyKey: key, body: body})
	if f != nil {
		return nil, grpcStatus(f)
	}
	return &pb.SubmitResponse{Ack: toProto(a)}, nil
}

// SubmitStream implements the bidirectional RPC: up to WSMaxInFlight
// requests in flight per stream, answered as the broker acknowledges them;
// requests are produced in the order received, so a conversation's
// accepted messages are stored in the order they were sent.
// On shutdown it stops taking requests, answers those in flight and ends
// the stream with UNAVAILABLE. Its receiving goroutine ends when the
// stream does, which grpc-go guarantees once this method returns.
func (g *grpcServer) SubmitStream(stream grpc.BidiStreamingServer[pb.SubmitStreamRequest, pb.SubmitStreamResponse]) error {
	changed := g.in.tenants.Changed()
	t, err := g.authenticate(stream.Context())
	if err != nil {
		return err
	}
	ctx := stream.Context()
	var sendMu sync.Mutex
	send := func(m *pb.SubmitStreamResponse) {
		sendMu.Lock()
		defer sendMu.Unlock()
		_ = stream.Send(m) // a failed send ends the stream; Recv then fails
	}
	type received struct {
		req *pb.SubmitStreamRequest
		err error
	}
	recv := make(chan received)
	go func() {
		for {
			req, err := stream.Recv()
			select {
			case recv <- received{req, err}:
			case <-ctx.Done():
				return
			}
			if err != nil {
				return
			}
		}
	}()
	slots := make(semaphore, g.in.cfg.WSMaxInFlight)
	defer func() {
		for range cap(slots) {
			slots <- struct{}{}
		}
	}()
	for {
		var rc received
		select {
		case <-g.in.stop:
			return status.Error(codes.Unavailable, "ingress is shutting down")
		case <-ctx.Done(): // the client or its connection went away (the receiver may have left without a word)
			return status.FromContextError(ctx.Err()).Err()
		case <-changed: // a tenants reload: a revoked key ends the stream
			changed = g.in.tenants.Changed()
			var f *failure
			if t, f = g.in.stillValid("grpc", grpcAuthorization(ctx)); f != nil {
				return grpcStatus(f)
			}
			continue
		case rc = <-recv:
		}
		if rc.err != nil {
			return nil // the client closed its side (io.EOF) or the stream broke
		}
		m := rc.req
		select {
		case <-g.in.stop:
			return status.Error(codes.Unavailable, "ingress is shutting down")
		case slots <- struct{}{}:
		}
		// begin here, in order of receipt, so that a conversation's
		// messages are stored in the order they were sent; wait in another
		// goroutine.
		conv, key, body := fromProto(m.GetRequest())
		p := g.in.begin(ctx, submission{protocol: "grpc", tenant: t, conversationID: conv, idempotencyKey: key, body: body})
		go func() {
			defer slots.release()
			a, f := p.wait()
			if f != nil {
				send(&pb.SubmitStreamResponse{CorrelationId: m.GetCorrelationId(), Result: &pb.SubmitStreamResponse_Failure{Failure: &pb.Failure{
					Code: f.code, Message: f.message, Field: f.field, Status: int32(f.status), RetryAfterMs: f.retryAfter.Milliseconds()}}})
				return
			}
			send(&pb.SubmitStreamResponse{CorrelationId: m.GetCorrelationId(), Result: &pb.SubmitStreamResponse_Ack{Ack: toProto(a)}})
		}()
	}
}
