package loadtest

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// fakeIngress serves SubmitStream: it records the order requests arrive
// in, answers them out of order, refuses model "busy" with a Failure and
// never answers model "silent".
type fakeIngress struct {
	pb.UnimplementedIngressServer
	mu  sync.Mutex
	got []string // loadtest ids in order of receipt
}

func (f *fakeIngress) SubmitStream(stream grpc.BidiStreamingServer[pb.SubmitStreamRequest, pb.SubmitStreamResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if a := md.Get("authorization"); len(a) == 0 || a[0] != "Bearer k1" {
		return status.Error(codes.Unauthenticated, "a valid API key is required")
	}
	var sendMu sync.Mutex
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		req, err := stream.Recv()
		if err != nil {
			return nil
		}
		f.mu.Lock()
		f.got = append(f.got, req.GetRequest().GetMetadata()[MetadataKey])
		f.mu.Unlock()
		resp := &pb.SubmitStreamResponse{CorrelationId: req.GetCorrelationId(), Result: &pb.SubmitStreamResponse_Ack{Ack: &pb.Ack{RequestId: "r"}}}
		switch req.GetRequest().GetModel() {
		case "silent":
			continue
		case "busy":
			resp.Result = &pb.SubmitStreamResponse_Failure{Failure: &pb.Failure{Code: "unavailable", Status: 503, RetryAfterMs: 1000}}
		}
		wg.Add(1)
		go func() { // later requests are answered first
			defer wg.Done()
			time.Sleep(time.Duration(3-i%3) * 5 * time.Millisecond)
			sendMu.Lock()
			defer sendMu.Unlock()
			_ = stream.Send(resp)
		}()
	}
}

// serveGRPC serves on a loopback port until the test ends.
func serveGRPC(t *testing.T, register func(*grpc.Server)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	register(srv)
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

func TestGRPCDriver(t *testing.T) {
	f := &fakeIngress{}
	addr := serveGRPC(t, func(s *grpc.Server) { pb.RegisterIngressServer(s, f) })
	d, err := newGRPCDriver(addr, "k1", 2*time.Second, 2, 3)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()
	var ms []Message
	for i := range 6 {
		ms = append(ms, Message{ID: fmt.Sprintf("m%d", i), Conversation: "c1", Model: "sim", Lane: "interactive", Content: "hi"})
	}
	for i, err := range d.SendCall(ctx, ms) {
		if err != nil {
			t.Errorf("message %d: %v", i, err)
		}
	}
	f.mu.Lock()
	if fmt.Sprint(f.got) != "[m0 m1 m2 m3 m4 m5]" {
		t.Errorf("received %v, want m0..m5 in order", f.got)
	}
	f.mu.Unlock()
	// Concurrent sends share the pool's streams.
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() {
			errs[i] = d.Send(ctx, Message{ID: fmt.Sprintf("p%d", i), Conversation: fmt.Sprintf("c%d", i), Model: "sim"})
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("concurrent send %d: %v", i, err)
		}
	}
	for _, tc := range []struct{ model, want string }{{"busy", "grpc_503_unavailable"}} {
		err := d.Send(ctx, Message{Conversation: "c1", Model: tc.model})
		if got := errorCode(err); got != tc.want {
			t.Errorf("%s: code %q, want %q", tc.model, got, tc.want)
		}
		if after, ok := retryable(err); !ok || after != time.Second {
			t.Errorf("%s: retryable %v after %v, want a resend after the refusal's retry_after_ms (1s)", tc.model, ok, after)
		}
	}

	short, err := newGRPCDriver(addr, "k1", 200*time.Millisecond, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer short.Close()
	if got := errorCode(short.Send(ctx, Message{Conversation: "c1", Model: "silent"})); got != "timeout" {
		t.Errorf("unanswered: code %q, want timeout", got)
	}
	if err := short.Send(ctx, Message{Conversation: "c1", Model: "sim"}); err != nil {
		t.Errorf("send after a timeout on the same stream: %v", err)
	}

	bad, err := newGRPCDriver(addr, "wrong", time.Second, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	for range 2 { // the broken stream is replaced, and refused again
		if got := errorCode(bad.Send(ctx, Message{Conversation: "c1", Model: "sim"})); got != "grpc_unauthenticated" {
			t.Errorf("bad key: code %q, want grpc_unauthenticated", got)
		}
	}

	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	gone := ln.Addr().String()
	ln.Close()
	refused, err := newGRPCDriver(gone, "", time.Second, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer refused.Close()
	if got := errorCode(refused.Send(ctx, Message{Conversation: "c1"})); got != "connect_refused" {
		t.Errorf("refused: code %q, want connect_refused", got)
	}
}

// fakeEgress serves Subscribe: connection n sends a chunk and a final of
// request rn with cursors, then an End, and the third connection stays
// open without events.
type fakeEgress struct {
	pb.UnimplementedEgressServer
	mu    sync.Mutex
	froms []string
}

func (f *fakeEgress) Subscribe(req *pb.SubscribeRequest, stream grpc.ServerStreamingServer[pb.SubscribeResponse]) error {
	md, _ := metadata.FromIncomingContext(stream.Context())
	if a := md.Get("authorization"); len(a) == 0 || a[0] != "Bearer k1" {
		return status.Error(codes.Unauthenticated, "a valid API key is required")
	}
	f.mu.Lock()
	f.froms = append(f.froms, req.GetFrom())
	n := len(f.froms)
	f.mu.Unlock()
	if err := stream.SendHeader(nil); err != nil {
		return err
	}
	if n > 2 {
		<-stream.Context().Done()
		return nil
	}
	id := fmt.Sprintf("r%d", n)
	md2 := map[string]string{MetadataKey: id}
	msgs := []*pb.SubscribeResponse{
		{Cursor: fmt.Sprintf("c%d", 2*n), Event: &pb.SubscribeResponse_Answer{Answer: &pb.Answer{RequestId: id, ConversationId: "c", Attempt: 1, Metadata: md2,
			Body: &pb.Answer_Chunk{Chunk: &pb.Chunk{Index: 0, Delta: "x"}}}}},
		{Event: &pb.SubscribeResponse_Restart{Restart: &pb.Restart{RequestId: id, ConversationId: "c", Attempt: 2}}},
		{Cursor: fmt.Sprintf("c%d", 2*n+1), Event: &pb.SubscribeResponse_Answer{Answer: &pb.Answer{RequestId: id, ConversationId: "c", Attempt: 2, Metadata: md2,
			Body: &pb.Answer_Final{Final: &pb.Final{Content: "x"}}}}},
		{Cursor: fmt.Sprintf("c%d", 2*n+1), Event: &pb.SubscribeResponse_End{End: &pb.End{Reason: "shutdown", Cursor: fmt.Sprintf("c%d", 2*n+1)}}},
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

// collect opens r, watches conversation c and returns the answers once
// want have come (or after 5s).
func collect(t *testing.T, r Reader, want int) []Answer {
	t.Helper()
	var mu sync.Mutex
	var got []Answer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Open(ctx, func(a Answer) { mu.Lock(); got = append(got, a); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if err := r.Watch(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= want {
			break
		}
	}
	r.Close()
	mu.Lock()
	defer mu.Unlock()
	return append([]Answer(nil), got...)
}

// TestGRPCReaderResumes: a Subscribe stream that ends is reopened from
// the last cursor, and answers keep coming.
func TestGRPCReaderResumes(t *testing.T) {
	f := &fakeEgress{}
	addr := serveGRPC(t, func(s *grpc.Server) { pb.RegisterEgressServer(s, f) })
	r, err := newGRPCReader(addr, "k1", 2)
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, r, 4)
	if len(got) != 4 || got[0].Kind != Chunk || got[1].Kind != Final || got[1].Attempt != 2 || got[3].ID != "r2" {
		t.Fatalf("answers %+v: want chunk and final of r1 and r2", got)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.froms) < 2 || f.froms[0] != "" || f.froms[1] != "c3" {
		t.Errorf("from per connection %q, want \"\" then c3", f.froms)
	}
	if r.Reconnects() < 1 {
		t.Error("no reconnect counted")
	}
}

func TestGRPCReaderRefused(t *testing.T) {
	addr := serveGRPC(t, func(s *grpc.Server) { pb.RegisterEgressServer(s, &fakeEgress{}) })
	r, err := newGRPCReader(addr, "wrong", 1)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	defer cancel()
	if err := r.Open(ctx, func(Answer) {}); err != nil {
		t.Fatal(err)
	}
	if err := r.Watch(ctx, "c"); err == nil {
		t.Error("Watch with a bad key returned nil")
	}
}
