package egress

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestGRPCStalledClientIsLetGo: a gRPC client that stops reading (its
// connection kept open) is let go within the write timeout once the hub
// cuts its mailbox, as SSE and WebSocket clients are. (Found in review:
// grpc-go's Send has no deadline, and the stream was held until the client
// disconnected.)
func TestGRPCStalledClientIsLetGo(t *testing.T) {
	h := newHarness(t)
	eg := h.start(func(c *Config) { c.SubscriberBuffer = 32; c.WriteTimeout = 300 * time.Millisecond })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(eg.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := pb.NewEgressClient(conn).Subscribe(ctx, &pb.SubscribeRequest{ConversationId: "stall"}); err != nil {
		t.Fatal(err)
	} // never Recv
	waitFor(ctx, t, "the stream to open", func() bool {
		return eg.metric(t, "switchboard_egress_subscribers", "transport", "grpc") == 1
	})
	big := strings.Repeat("x", 8<<10)
	for n := 0; n < 2000 && eg.metric(t, "switchboard_egress_subscriber_overflows_total") == 0; n++ {
		r := res("stall", "", "r", "run", 1, int32(n), false)
		r.GetChunk().Delta = fmt.Sprintf("%d %s", n, big)
		h.produce(r)
	}
	if eg.metric(t, "switchboard_egress_subscriber_overflows_total") != 1 {
		t.Fatal("no overflow")
	}
	deadline := time.Now().Add(3 * time.Second) // 10x WriteTimeout
	for eg.metric(t, "switchboard_egress_subscribers", "transport", "grpc") != 0 {
		if time.Now().After(deadline) {
			t.Fatal("3s after overflow (WriteTimeout 300ms) the stalled gRPC stream is still being served: its goroutine is blocked in Send")
		}
		time.Sleep(50 * time.Millisecond)
	}
}
