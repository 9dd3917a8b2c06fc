package ingress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Order within one call: a conversation's messages given in one batch, or
// one after another on one WebSocket or gRPC stream, are stored in that
// order, whatever other conversations are interleaved with them.

const (
	orderConversations = 3
	orderPerConv       = 20
)

// orderItem is the i-th message of an order test: conversation i%3, its
// (i/3)-th message.
func orderItem(i int) (conv string, seq int) {
	return fmt.Sprintf("ord-%d", i%orderConversations), i / orderConversations
}

// checkAckOrder fails unless, per conversation, offsets grow with the item
// order. acks[i] is item i's ack.
func checkAckOrder(t *testing.T, acks []ack) {
	t.Helper()
	last := map[string]ack{}
	for i, a := range acks {
		conv, _ := orderItem(i)
		if a.ConversationID != conv {
			t.Fatalf("item %d: ack for %q, want %q", i, a.ConversationID, conv)
		}
		if prev, ok := last[conv]; ok && (a.Partition != prev.Partition || a.Offset <= prev.Offset) {
			t.Errorf("item %d of %s stored at %d:%d, after its previous message at %d:%d: out of order",
				i, conv, a.Partition, a.Offset, prev.Partition, prev.Offset)
		}
		last[conv] = a
	}
}

func TestBatchKeepsConversationOrder(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	for try := range 3 {
		var items []string
		for i := range orderConversations * orderPerConv {
			conv, seq := orderItem(i)
			items = append(items, fmt.Sprintf(`{"conversation_id":%q,"model":"sim","messages":[{"role":"user","content":"try %d message %d"}]}`, conv, try, seq))
		}
		res, b := do(t, in.Handler(), "POST", "/v1/messages:batch", "application/json", `{"requests":[`+strings.Join(items, ",")+`]}`)
		var got batchAnswer
		if err := json.Unmarshal(b, &got); err != nil || res.StatusCode != http.StatusOK || got.Accepted != len(items) {
			t.Fatalf("try %d: %d %s", try, res.StatusCode, b)
		}
		acks := make([]ack, len(items))
		for i, r := range got.Results {
			acks[i] = *r.Ack
		}
		checkAckOrder(t, acks)
	}
}

// TestBatchFailureStopsItsConversation: once an item of a conversation is
// refused, the conversation's later items in the batch are not sent (they
// would land ahead of it); other conversations go on.
func TestBatchFailureStopsItsConversation(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	body := `{"requests":[
		{"conversation_id":"fa","model":"sim","messages":[{"role":"user","content":"1"}]},
		{"conversation_id":"fb","model":"sim","messages":[{"role":"user","content":"1"}]},
		{"conversation_id":"fa","model":"sim","messages":[{"role":"robot","content":"2"}]},
		{"conversation_id":"fb","model":"sim","messages":[{"role":"user","content":"2"}]},
		{"conversation_id":"fa","model":"sim","messages":[{"role":"user","content":"3"}]}]}`
	res, b := do(t, in.Handler(), "POST", "/v1/messages:batch", "application/json", body)
	var got batchAnswer
	if err := json.Unmarshal(b, &got); err != nil || res.StatusCode != http.StatusOK {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	want := []struct {
		status int
		code   string
	}{{202, ""}, {202, ""}, {400, "invalid_request"}, {202, ""}, {409, "previous_message_failed"}}
	for i, w := range want {
		r := got.Results[i]
		code := ""
		if r.Error != nil {
			code = r.Error.Code
		}
		if r.Status != w.status || code != w.code {
			t.Errorf("item %d: %d %q, want %d %q", i, r.Status, code, w.status, w.code)
		}
	}
	if got.Accepted != 3 || got.Failed != 2 {
		t.Errorf("accepted %d failed %d, want 3 and 2", got.Accepted, got.Failed)
	}
}

func TestWebSocketKeepsConversationOrder(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	srv := httptest.NewServer(in.Handler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, _, err := dialWS(ctx, t, srv.URL, devKey)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	n := orderConversations * orderPerConv
	for i := range n {
		conv, seq := orderItem(i)
		f := fmt.Sprintf(`{"type":"submit","id":"%d","conversation_id":%q,"model":"sim","messages":[{"role":"user","content":"message %d"}]}`, i, conv, seq)
		if err := c.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	acks := make([]ack, n)
	for range n {
		_, data, err := c.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rep wsReply
		if err := json.Unmarshal(data, &rep); err != nil || rep.Type != "ack" {
			t.Fatalf("reply %s: %v", data, err)
		}
		var i int
		if _, err := fmt.Sscan(rep.ID, &i); err != nil {
			t.Fatalf("reply id %q: %v", rep.ID, err)
		}
		acks[i] = *rep.Ack
	}
	checkAckOrder(t, acks)
}

func TestGRPCStreamKeepsConversationOrder(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	cl := pb.NewIngressClient(grpcClient(t, in))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	stream, err := cl.SubmitStream(withKey(ctx, devKey))
	if err != nil {
		t.Fatal(err)
	}
	n := orderConversations * orderPerConv
	for i := range n {
		conv, seq := orderItem(i)
		if err := stream.Send(&pb.SubmitStreamRequest{CorrelationId: fmt.Sprint(i), Request: &pb.SubmitRequest{
			ConversationId: conv, Model: "sim", Messages: []*pb.Message{{Role: "user", Content: fmt.Sprint("message ", seq)}}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	acks := make([]ack, n)
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		var i int
		if _, err := fmt.Sscan(m.GetCorrelationId(), &i); err != nil {
			t.Fatalf("correlation id %q: %v", m.GetCorrelationId(), err)
		}
		a := m.GetAck()
		if a == nil {
			t.Fatalf("request %d failed: %v", i, m.GetFailure())
		}
		acks[i] = ack{RequestID: a.GetRequestId(), ConversationID: a.GetConversationId(), Lane: a.GetLane(), Partition: a.GetPartition(), Offset: a.GetOffset()}
	}
	checkAckOrder(t, acks)
}

func TestDuplicateKey(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{`{"a":1,"b":2}`, ""},
		{`{"a":1,"a":2}`, "a"},
		{`{"a":{"b":1,"c":{"b":2}},"b":[{"x":1},{"x":2}]}`, ""},
		{`{"m":[{"role":"user","role":"system"}]}`, "role"},
		{`{"a":{"k":"v"},"x":{"k":"v","k":"w"}}`, "k"},
		{`{"a":["a","a"],"b":"a"}`, ""},
		{`{"metadata":{"A":"1","a":"2"}}`, ""},
	}
	for _, tt := range tests {
		got, dup := duplicateKey([]byte(tt.in))
		if got != tt.want || dup != (tt.want != "") {
			t.Errorf("duplicateKey(%s) = %q, %v; want %q", tt.in, got, dup, tt.want)
		}
	}
}

// TestKafkaPositionsOnlyWhenShown: a tenant without kafka_positions in its
// show list gets acks without partition and offset (over HTTP and gRPC).
func TestKafkaPositionsOnlyWhenShown(t *testing.T) {
	in := newIngress(t, newCluster(t), nil)
	for _, tc := range []struct {
		key  string
		want bool
	}{{devKey, true}, {limitedKey, false}} {
		res, b := doWith(t, in.Handler(), "POST", "/v1/conversations/pos/messages", "application/json",
			`{"model":"sim","lane":"batch","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"Authorization": "Bearer " + tc.key})
		var got map[string]any
		if err := json.Unmarshal(b, &got); err != nil || res.StatusCode != http.StatusAccepted {
			t.Fatalf("%d %s", res.StatusCode, b)
		}
		_, hasP := got["partition"]
		_, hasO := got["offset"]
		if hasP != tc.want || hasO != tc.want || got["request_id"] == "" {
			t.Errorf("key %s: ack %s, want positions %v", tc.key, b, tc.want)
		}
	}
	cl := pb.NewIngressClient(grpcClient(t, in))
	res, err := cl.Submit(withKey(t.Context(), limitedKey), &pb.SubmitRequest{ConversationId: "pos", Model: "sim", Lane: "batch",
		Messages: []*pb.Message{{Role: "user", Content: "hi"}}})
	if err != nil || res.GetAck().Partition != nil || res.GetAck().Offset != nil || res.GetAck().GetRequestId() == "" {
		t.Errorf("gRPC ack %v, %v: want no positions", res, err)
	}
}
