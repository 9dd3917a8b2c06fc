package egress

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// conversation writes one conversation's results with every kind of
// repeat a reader must drop, and returns the labels a client must see, in
// order, and every record's cursor.
func conversation(h *harness, conv string) (want []string, cursors []cursor) {
	recs := []*pb.Result{
		res(conv, "t1", "r1", "runA", 1, 0, false), // r1, run A, attempt 1
		res(conv, "t1", "r1", "runA", 1, 1, false),
		res(conv, "t1", "r1", "runA", 1, 1, false), // repeated chunk
		res(conv, "t1", "r1", "runA", 2, 0, false), // a retry: attempt 2
		res(conv, "t1", "r1", "runA", 1, 2, false), // superseded attempt
		res(conv, "t1", "r1", "runB", 1, 0, false), // a rerun after a crash
		res(conv, "t1", "r1", "runA", 2, 1, false), // the old run, late: superseded
		res(conv, "t1", "r1", "runB", 1, 1, false),
		res(conv, "t1", "r1", "runB", 1, 0, true),  // r1's answer
		res(conv, "t1", "r1", "runB", 1, 0, true),  // repeated terminal
		res(conv, "t1", "r1", "runC", 1, 0, false), // a rerun after the answer: dropped
		res(conv, "t1", "r2", "runD", 1, 0, false),
		res(conv, "t1", "r2", "runD", 1, 0, true),
	}
	cursors = h.produce(recs...)
	for _, i := range []int{0, 1, 3, 5, 7, 8, 11, 12} {
		if i == 3 || i == 5 { // the retry and the rerun start r1's answer over
			want = append(want, "restart:r1")
		}
		name := "chunk"
		if recs[i].GetFinal() != nil {
			name = "result"
		}
		want = append(want, name+":"+labelOf(recs[i]))
	}
	return want, cursors
}

// answered are the events that carry an answer (not restart or end).
func answered(evs []got) []got {
	var out []got
	for _, e := range evs {
		if e.name != "restart" && e.name != "end" {
			out = append(out, e)
		}
	}
	return out
}

func labels(evs []got) []string {
	var out []string
	for _, e := range evs {
		out = append(out, e.name+":"+e.label)
	}
	return out
}

// readWS reads a WebSocket stream to its end.
func readWS(ctx context.Context, t *testing.T, url string) ([]got, websocket.StatusCode, error) {
	t.Helper()
	conn, _, err := websocket.Dial(ctx, url, nil) //nolint:bodyclose // the upgrade's response has no body to close
	if err != nil {
		return nil, 0, err
	}
	defer conn.CloseNow()
	var out []got
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			return out, websocket.CloseStatus(err), nil
		}
		var m struct {
			Cursor  string          `json:"cursor"`
			Event   string          `json:"event"`
			Reason  string          `json:"reason"`
			Answer  json.RawMessage `json:"answer"`
			Restart json.RawMessage `json:"restart"`
		}
		if err := json.Unmarshal(data, &m); err != nil {
			t.Fatalf("message %q: %v", data, err)
		}
		g := got{cursor: m.Cursor, name: m.Event, label: m.Reason}
		switch m.Event {
		case "end":
		case "restart":
			var r pb.Restart
			if err := protojson.Unmarshal(m.Restart, &r); err != nil {
				t.Fatalf("restart %q: %v", m.Restart, err)
			}
			g.label = r.GetRequestId()
		default:
			var a pb.Answer
			if err := protojson.Unmarshal(m.Answer, &a); err != nil {
				t.Fatalf("answer %q: %v", m.Answer, err)
			}
			g.label = labelOfAnswer(&a)
		}
		out = append(out, g)
	}
}

// readGRPC reads a gRPC stream to its end.
func readGRPC(ctx context.Context, t *testing.T, addr string, req *pb.SubscribeRequest, key string) ([]got, error) {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	opts := []grpc.CallOption{}
	if key != "" {
		opts = append(opts, grpc.PerRPCCredsCallOption{Creds: bearerCreds(key)})
	}
	stream, err := pb.NewEgressClient(conn).Subscribe(ctx, req, opts...)
	if err != nil {
		return nil, err
	}
	var out []got
	for {
		m, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		if e := m.GetEnd(); e != nil {
			out = append(out, got{cursor: e.GetCursor(), name: "end", label: e.GetReason()})
			continue
		}
		if r := m.GetRestart(); r != nil {
			out = append(out, got{name: "restart", label: r.GetRequestId()})
			continue
		}
		a := m.GetAnswer()
		name := "chunk"
		if a.GetFinal() != nil {
			name = "result"
		}
		out = append(out, got{cursor: m.GetCursor(), name: name, label: labelOfAnswer(a)})
	}
}

type bearerCreds string

func (b bearerCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearerCreds) RequireTransportSecurity() bool { return false }

// TestTransportsDeliverOnceInOrder replays one conversation through SSE,
// WebSocket and gRPC: each drops repeated chunks, superseded attempts and
// runs and repeated terminals, ends after ?request_id='s answer with reason
// done, and resumes after a cursor.
func TestTransportsDeliverOnceInOrder(t *testing.T) {
	h := newHarness(t)
	eg := h.start(nil)
	want, cursors := conversation(h, "conv-1")
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	all := append(slices.Clip(want), "end:done")

	sse, status := readSSE(ctx, t, eg.url+"/v1/conversations/conv-1/events?request_id=r2", nil, 0)
	if status != http.StatusOK || !slices.Equal(labels(sse), all) {
		t.Errorf("SSE: status %d, events\n%v\nwant\n%v", status, labels(sse), all)
	}
	ws, code, err := readWS(ctx, t, "ws"+strings.TrimPrefix(eg.url, "http")+"/v1/conversations/conv-1/ws?request_id=r2")
	if err != nil || code != websocket.StatusNormalClosure || !slices.Equal(labels(ws), all) {
		t.Errorf("WebSocket: err %v, close %v, events\n%v\nwant\n%v", err, code, labels(ws), all)
	}
	gr, err := readGRPC(ctx, t, eg.grpcAddr, &pb.SubscribeRequest{ConversationId: "conv-1", RequestId: "r2"}, "")
	if err != nil || !slices.Equal(labels(gr), all) {
		t.Errorf("gRPC: err %v, events\n%v\nwant\n%v", err, labels(gr), all)
	}
	// Every event's cursor is its record's; the end's is the last event's.
	for _, evs := range [][]got{sse, ws, gr} {
		if len(evs) != len(all) {
			continue
		}
		for i, idx := range []int{0, 1, 3, 5, 7, 8, 11, 12} {
			if c := answered(evs)[i].cursor; c != eg.token("", "conv-1", cursors[idx]) {
				t.Errorf("event %d cursor %s, want the token of %s", i, c, cursors[idx])
			}
		}
		if evs[len(evs)-1].cursor != eg.token("", "conv-1", cursors[12]) {
			t.Errorf("end cursor %s, want the token of %s", evs[len(evs)-1].cursor, cursors[12])
		}
	}

	// Resume after the rerun's first chunk (cursors[5]): the rest, once.
	from := eg.token("", "conv-1", cursors[5])
	rest := append(slices.Clip(want[6:]), "end:done")
	sse, _ = readSSE(ctx, t, eg.url+"/v1/conversations/conv-1/events?request_id=r2", http.Header{"Last-Event-Id": {from}}, 0)
	ws, _, _ = readWS(ctx, t, "ws"+strings.TrimPrefix(eg.url, "http")+"/v1/conversations/conv-1/ws?request_id=r2&from="+from)
	gr, _ = readGRPC(ctx, t, eg.grpcAddr, &pb.SubscribeRequest{ConversationId: "conv-1", RequestId: "r2", From: from}, "")
	for name, evs := range map[string][]got{"SSE": sse, "WebSocket": ws, "gRPC": gr} {
		if !slices.Equal(labels(evs), rest) {
			t.Errorf("%s resumed from %s:\n%v\nwant\n%v", name, from, labels(evs), rest)
		}
	}
	if n := eg.metric(t, "switchboard_egress_duplicates_dropped_total", "reason", "superseded_run"); n < 3 {
		t.Errorf("superseded_run drops = %v, want at least 3 (one per transport)", n)
	}
}

// TestStreamErrors: bad input gets a clear error on every transport.
func TestStreamErrors(t *testing.T) {
	h := newHarness(t)
	eg := h.start(nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for _, tc := range []struct{ path, header string }{
		{"/v1/conversations/bad%20id/events", ""},
		{"/v1/conversations/c/events?from=x", ""},
		{"/v1/conversations/c/events", "1:2:3"},
		{"/v1/conversations/c/ws?from=-4:1", ""},
		{fmt.Sprintf("/v1/conversations/c/events?from=%d:0", 99), ""},
		{"/v1/conversations/c/events", "0:5"},                                                             // a raw position: cursors are tokens
		{"/v1/conversations/c/events?from=" + eg.token("", "other", cursor{partition: 0, offset: 5}), ""}, // another conversation's
		{"/v1/conversations/c/events?request_id=" + strings.Repeat("r", 300), ""},
	} {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, eg.url+tc.path, nil)
		if tc.header != "" {
			req.Header.Set("Last-Event-ID", tc.header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), `"code"`) {
			t.Errorf("%s (%s): %d %s, want 400 with an error code", tc.path, tc.header, resp.StatusCode, body)
		}
	}
	_, err := readGRPC(ctx, t, eg.grpcAddr, &pb.SubscribeRequest{ConversationId: "c", From: "nope"}, "")
	if err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Errorf("gRPC bad cursor: %v, want InvalidArgument", err)
	}
}

// TestGRPCHeadersOnOpen: a Subscribe stream's headers come once it is
// open, before any event (a conversation with none yet), so a client
// knows it is subscribed.
func TestGRPCHeadersOnOpen(t *testing.T) {
	h := newHarness(t)
	eg := h.start(nil)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(eg.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	stream, err := pb.NewEgressClient(conn).Subscribe(ctx, &pb.SubscribeRequest{ConversationId: "quiet"})
	if err != nil {
		t.Fatal(err)
	}
	md, err := stream.Header()
	if err != nil || md == nil {
		t.Fatalf("headers: %v %v, want headers before any event", md, err)
	}
}

// TestWebSocketReadsNoMessages: the server reads nothing from a WebSocket
// client; a data message closes the stream with 1008 (policy violation)
// and does not disturb the egress.
func TestWebSocketReadsNoMessages(t *testing.T) {
	h := newHarness(t)
	eg := h.start(nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(eg.url, "http")+"/v1/conversations/c/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.CloseNow()
	if err := conn.Write(ctx, websocket.MessageText, []byte(`{"from":"0:0"}`)); err != nil {
		t.Fatal(err)
	}
	_, _, err = conn.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusPolicyViolation {
		t.Errorf("close status %v (%v), want %v", got, err, websocket.StatusPolicyViolation)
	}
	waitFor(ctx, t, "the stream to close", func() bool {
		return eg.metric(t, "switchboard_egress_subscribers", "transport", "websocket") == 0
	})
}
