package loadtest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// nameGRPC names the driver that submits through ingress's gRPC API and
// the reader that follows egress's gRPC Subscribe streams.
const nameGRPC = "grpc"

// grpcDriver submits requests over ingress's gRPC SubmitStream, the API a
// gRPC client sending at volume uses (unary Submit pays a stream per
// request; SubmitStream is what the WebSocket API is to HTTP POSTs). It
// keeps a fixed pool of streams spread over a few connections; every Send
// or SendCall writes its requests on one stream, in order, and waits for
// their answers, matched by correlation_id. Many calls share a stream, as
// the API allows (up to ingress's --ws-max-in-flight each), so a stream's
// answers come back in the broker's order, not the order sent.
//
// Order: ingress produces a stream's requests in the order received, and
// the caller serialises a conversation's sends (the next one only after
// the previous one's answer), so a conversation's requests are stored in
// the order sent; a call's requests are written under the stream's send
// lock, one after another, so they stay in order too.
//
// Errors: a rejection on the stream (Failure) is coded like the WebSocket
// driver's, grpc_<HTTP status>_<code>; a broken stream fails every request
// waiting on it with grpc_<status code>[_<ErrorInfo reason>] (or
// connect_refused) and is replaced by the next call. Like the other
// drivers, it does not retry itself: a refusal carries its retry_after_ms
// (SendError.RetryAfter), and the run resends it (retry.go).
//
// Back-pressure: ingress stops reading a stream that has --ws-max-in-flight
// requests waiting for Kafka, and a write to it then blocks on gRPC flow
// control, past the call's timeout, until ingress reads again or the
// stream breaks; that wait is part of the measured latency, as it is for a
// real client.
type grpcDriver struct {
	addr    string
	key     string
	timeout time.Duration

	conns []*grpc.ClientConn

	slots []*streamSlot // fixed; a slot's stream is (re)opened on use

	mu     sync.Mutex
	next   int
	seq    uint64
	closed bool
}

// streamSlot holds one stream of the pool; mu is held while the stream is
// opened, so two calls never open one slot and a slow open holds up only
// the calls of its slot. Lock order: grpcDriver.mu is never held while a
// slot's mu is taken.
type streamSlot struct {
	mu sync.Mutex
	s  *submitStream // nil, live or broken
}

// newGRPCDriver returns a driver with nStreams streams over nConns
// connections to addr (host:port, plaintext).
func newGRPCDriver(addr, apiKey string, timeout time.Duration, nConns, nStreams int) (*grpcDriver, error) {
	d := &grpcDriver{addr: addr, key: apiKey, timeout: timeout, slots: make([]*streamSlot, nStreams)}
	for i := range d.slots {
		d.slots[i] = &streamSlot{}
	}
	for range nConns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			d.Close()
			return nil, fmt.Errorf("driver grpc: %w", err)
		}
		d.conns = append(d.conns, cc)
	}
	return d, nil
}

func (d *grpcDriver) Name() string { return nameGRPC }

func (d *grpcDriver) Send(ctx context.Context, m Message) error {
	return d.SendCall(ctx, []Message{m})[0]
}

// SendCall writes ms on one stream, in order, and waits for each answer
// or the timeout.
func (d *grpcDriver) SendCall(ctx context.Context, ms []Message) []error {
	errs := make([]error, len(ms))
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	s, base, err := d.stream(ctx, len(ms))
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	waits := make([]chan error, len(ms))
	ids := make([]string, len(ms))
	reqs := make([]*pb.SubmitStreamRequest, len(ms))
	for i, m := range ms {
		ids[i] = strconv.FormatUint(base+uint64(i), 10)
		waits[i] = make(chan error, 1)
		reqs[i] = &pb.SubmitStreamRequest{CorrelationId: ids[i], Request: submitRequest(m)}
	}
	if err := s.submit(ids, waits, reqs); err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i := range ms {
		select {
		case errs[i] = <-waits[i]:
		case <-ctx.Done():
			s.forget(ids[i:])
			for j := i; j < len(ms); j++ {
				errs[j] = &SendError{Code: "timeout", Err: ctx.Err()}
			}
			return errs
		}
	}
	return errs
}

// submitRequest is m as the gRPC API takes it.
func submitRequest(m Message) *pb.SubmitRequest {
	return &pb.SubmitRequest{
		ConversationId: m.Conversation, Model: m.Model, Stream: m.Stream, Lane: m.Lane, MaxTokens: m.MaxTokens,
		Messages: []*pb.Message{{Role: roleUser, Content: m.Content}},
		Metadata: map[string]string{MetadataKey: m.ID}, IdempotencyKey: m.IdempotencyKey,
	}
}

// stream returns the next stream of the pool, opening it when its slot is
// empty or broken, and reserves n correlation IDs from the returned base.
func (d *grpcDriver) stream(ctx context.Context, n int) (*submitStream, uint64, error) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil, 0, &SendError{Code: "closed", Err: errors.New("driver closed")}
	}
	i := d.next
	d.next = (d.next + 1) % len(d.slots)
	base := d.seq
	d.seq += uint64(n)
	d.mu.Unlock()
	sl := d.slots[i]
	sl.mu.Lock()
	defer sl.mu.Unlock()
	if sl.s != nil && !sl.s.broken() {
		return sl.s, base, nil
	}
	s, err := openSubmitStream(ctx, d.conns[i%len(d.conns)], d.key)
	if err != nil {
		return nil, 0, err
	}
	sl.s = s
	return s, base, nil
}

func (d *grpcDriver) Close() {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	for _, sl := range d.slots {
		sl.mu.Lock()
		if sl.s != nil {
			sl.s.close()
		}
		sl.mu.Unlock()
	}
	for _, cc := range d.conns {
		cc.Close()
	}
}

// submitStream is one SubmitStream call and the requests waiting on it.
// Its receiving goroutine ends when the stream does (an error, or close
// cancelling it); done is closed then.
type submitStream struct {
	stream grpc.BidiStreamingClient[pb.SubmitStreamRequest, pb.SubmitStreamResponse]
	cancel context.CancelFunc
	done   chan struct{}

	sendMu sync.Mutex // one writer at a time; a call's requests stay together

	mu      sync.Mutex
	pending map[string]chan error // by correlation_id
	err     error                 // set when the stream broke; fails new submits
}

func openSubmitStream(ctx context.Context, cc *grpc.ClientConn, key string) (*submitStream, error) {
	// The stream outlives the call that opens it: ctx's values, not its
	// cancellation; close cancels it.
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	if key != "" {
		sctx = metadata.AppendToOutgoingContext(sctx, "authorization", "Bearer "+key)
	}
	// Opening waits for the connection; the call's deadline bounds that.
	stop := context.AfterFunc(ctx, cancel)
	st, err := pb.NewIngressClient(cc).SubmitStream(sctx)
	if !stop() { // the call gave up first
		err = ctx.Err()
	}
	if err != nil {
		cancel()
		return nil, &SendError{Code: grpcErrorCode(err), Err: err, RetryAfter: grpcRetryAfter(err)}
	}
	s := &submitStream{stream: st, cancel: cancel, done: make(chan struct{}), pending: make(map[string]chan error)}
	go s.receive()
	return s, nil
}

// submit registers the waits and writes the requests in order.
func (s *submitStream) submit(ids []string, waits []chan error, reqs []*pb.SubmitStreamRequest) error {
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return s.err
	}
	for i, id := range ids {
		s.pending[id] = waits[i]
	}
	s.mu.Unlock()
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	for _, r := range reqs {
		if err := s.stream.Send(r); err != nil {
			// The stream broke; Recv returns why, and receive fails
			// every request still waiting, these included.
			s.cancel()
			return nil
		}
	}
	return nil
}

// receive delivers each answer to its waiting request until the stream
// ends, then fails those still waiting.
func (s *submitStream) receive() {
	defer close(s.done)
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			se := &SendError{Code: grpcErrorCode(err), Err: err, RetryAfter: grpcRetryAfter(err)}
			s.mu.Lock()
			s.err = se
			pending := s.pending
			s.pending = nil
			s.mu.Unlock()
			for _, w := range pending {
				w <- se
			}
			s.cancel()
			return
		}
		s.mu.Lock()
		w, ok := s.pending[resp.GetCorrelationId()]
		delete(s.pending, resp.GetCorrelationId())
		s.mu.Unlock()
		if !ok {
			continue // the answer to a request whose call timed out
		}
		if f := resp.GetFailure(); f != nil {
			w <- &SendError{Code: fmt.Sprintf("grpc_%d_%s", f.GetStatus(), f.GetCode()), Status: int(f.GetStatus()), Err: errors.New(f.GetMessage()),
				RetryAfter: time.Duration(f.GetRetryAfterMs()) * time.Millisecond}
			continue
		}
		w <- nil
	}
}

// forget drops the waits of requests whose call gave up.
func (s *submitStream) forget(ids []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		delete(s.pending, id)
	}
}

func (s *submitStream) broken() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err != nil
}

// close ends the stream and waits for its receiving goroutine.
func (s *submitStream) close() {
	s.sendMu.Lock()
	_ = s.stream.CloseSend()
	s.sendMu.Unlock()
	s.cancel()
	<-s.done
}

// grpcErrorCode classifies a failed call or stream: connect_refused when
// nothing listens, else grpc_<status code>, with the ErrorInfo reason
// ingress gives (grpc_unauthenticated_unauthenticated).
func grpcErrorCode(err error) string {
	st, ok := status.FromError(err)
	if !ok {
		return transportCode(err)
	}
	if st.Code() == codes.Unavailable && strings.Contains(st.Message(), "connection refused") {
		return "connect_refused"
	}
	code := "grpc_" + strings.ToLower(st.Code().String())
	if st.Code() == codes.Canceled {
		return "canceled"
	}
	if st.Code() == codes.DeadlineExceeded {
		return "timeout"
	}
	for _, d := range st.Details() {
		if info, ok := d.(*errdetails.ErrorInfo); ok && info.GetReason() != "" {
			return code + "_" + info.GetReason()
		}
	}
	return code
}

// grpcRetryAfter is the RetryInfo delay of a failed call or stream; zero
// when it has none.
func grpcRetryAfter(err error) time.Duration {
	st, ok := status.FromError(err)
	if !ok {
		return 0
	}
	for _, d := range st.Details() {
		if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay() != nil {
			return ri.GetRetryDelay().AsDuration()
		}
	}
	return 0
}
