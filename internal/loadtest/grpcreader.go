package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// grpcReader holds one egress Subscribe stream per watched conversation,
// multiplexed over a few connections, the key in the authorization
// metadata. A stream that ends (an End message, egress restarted) is
// reopened with from set to the last cursor (see follower).
type grpcReader struct {
	follower
	key   string
	conns []*grpc.ClientConn
	next  int // guarded by follower.mu
}

func newGRPCReader(addr, apiKey string, nConns int) (*grpcReader, error) {
	r := &grpcReader{key: apiKey}
	for range nConns {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			r.Close()
			return nil, fmt.Errorf("reader grpc: %w", err)
		}
		r.conns = append(r.conns, cc)
	}
	r.follower.stream = r.stream
	return r, nil
}

func (r *grpcReader) Name() string { return nameGRPC }

func (r *grpcReader) Close() {
	r.follower.Close()
	for _, cc := range r.conns {
		cc.Close()
	}
}

// answerOfAnswer turns an egress Answer into the ledger's Answer, as
// answerOf does a Result.
func answerOfAnswer(a *pb.Answer, at time.Time) (Answer, bool) {
	res := &pb.Result{RequestId: a.GetRequestId(), ConversationId: a.GetConversationId(), Attempt: a.GetAttempt(), Metadata: a.GetMetadata()}
	switch b := a.GetBody().(type) {
	case *pb.Answer_Chunk:
		res.Body = &pb.Result_Chunk{Chunk: b.Chunk}
	case *pb.Answer_Final:
		res.Body = &pb.Result_Final{Final: b.Final}
	case *pb.Answer_Error:
		res.Body = &pb.Result_Error{Error: b.Error}
	}
	return answerOf(res, at)
}

func (r *grpcReader) stream(conv string, cursor *string, connected func()) error {
	r.mu.Lock()
	cc := r.conns[r.next%len(r.conns)]
	r.next++
	r.mu.Unlock()
	ctx, cancel := context.WithCancel(r.ctx)
	defer cancel()
	if r.key != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+r.key)
	}
	st, err := pb.NewEgressClient(cc).Subscribe(ctx, &pb.SubscribeRequest{ConversationId: conv, From: *cursor})
	if err != nil {
		return err
	}
	// Egress sends the headers once the subscription is open, or ends
	// the call with a status (a bad key or conversation).
	md, err := st.Header()
	if err != nil {
		return err
	}
	if md == nil { // ended without headers: the status says why
		if _, err := st.Recv(); err != nil {
			return err
		}
		return errors.New("stream ended without headers")
	}
	connected()
	for {
		msg, err := st.Recv()
		if err != nil {
			if errors.Is(err, io.EOF) {
				return errors.New("stream ended")
			}
			return err
		}
		if msg.GetCursor() != "" {
			*cursor = msg.GetCursor()
		}
		switch ev := msg.GetEvent().(type) {
		case *pb.SubscribeResponse_Answer:
			if a, ok := answerOfAnswer(ev.Answer, time.Now()); ok {
				r.deliver(a)
			}
		case *pb.SubscribeResponse_End:
			if c := ev.End.GetCursor(); c != "" {
				*cursor = c
			}
		}
	}
}
