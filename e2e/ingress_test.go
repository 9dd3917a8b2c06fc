package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// waitAnswer reads conversation conv's events from egress until the result
// of requestID arrives, and returns its data.
func waitAnswer(ctx context.Context, t *testing.T, egress, conv, requestID string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	var data string
	url := fmt.Sprintf("%s/v1/conversations/%s/events?request_id=%s", egress, conv, requestID)
	err := apptest.ReadSSE(ctx, url, "", nil, func(ev apptest.Event) bool {
		if ev.Name == "result" || ev.Name == "error" {
			data = ev.Name + " " + ev.Data
		}
		return true
	})
	if err != nil || !strings.HasPrefix(data, "result ") || !strings.Contains(data, requestID) {
		t.Errorf("conversation %s request %s: answer %q (err %v), want its result", conv, requestID, data, err)
	}
	return data
}

func send(ctx context.Context, t *testing.T, method, url, body string, headers map[string]string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apptest.DevKey)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// TestEveryProtocolIsAnswered submits over HTTP (single, with a repeated
// Idempotency-Key, and batch), WebSocket and gRPC (unary and stream) to
// the real ingress, and reads every answer from egress.
func TestEveryProtocolIsAnswered(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	s := apptest.StartStack(t, bin, apptest.StackOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	type sub struct{ conv, requestID string }
	var subs []sub

	// Without a key: 401.
	req, _ := http.NewRequestWithContext(ctx, "POST", s.IngressURL+"/v1/conversations/x/messages", strings.NewReader(`{}`))
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 401 {
		t.Fatalf("without a key: %v %v, want 401", resp, err)
	} else {
		resp.Body.Close()
	}

	// A model no backend serves: refused at the door (400) once ingress has
	// read the models the router-worker published, never dead-lettered.
	for i := 0; ; i++ {
		code, _, b := send(ctx, t, "POST", s.IngressURL+"/v1/conversations/p-unknown/messages",
			`{"model":"no-such-model","messages":[{"role":"user","content":"hi"}]}`, nil)
		if code == 400 && strings.Contains(string(b), `"unknown_model"`) {
			break
		}
		if i == 100 {
			t.Fatalf("unknown model: %d %s, want 400 unknown_model", code, b)
		}
		time.Sleep(100 * time.Millisecond)
	}

	// HTTP, twice with one Idempotency-Key: one request.
	body := `{"model":"sim","stream":true,"messages":[{"role":"user","content":"over http"}]}`
	var acks [2]ackBody
	for i := range acks {
		code, _, b := send(ctx, t, "POST", s.IngressURL+"/v1/conversations/p-http/messages", body, map[string]string{"Idempotency-Key": "e2e-1"})
		if code != 202 || json.Unmarshal(b, &acks[i]) != nil {
			t.Fatalf("http: %d %s", code, b)
		}
	}
	if acks[0] != acks[1] {
		t.Errorf("a repeated Idempotency-Key got another ack: %+v %+v", acks[0], acks[1])
	}
	subs = append(subs, sub{"p-http", acks[0].RequestID})

	// HTTP batch.
	code, _, b := send(ctx, t, "POST", s.IngressURL+"/v1/messages:batch", `{"requests":[
		{"conversation_id":"p-batch-1","model":"sim","lane":"batch","messages":[{"role":"user","content":"one"}]},
		{"conversation_id":"p-batch-2","model":"sim","messages":[{"role":"user","content":"two"}]},
		{"conversation_id":"p-batch-3","model":"","messages":[{"role":"user","content":"three"}]}]}`, nil)
	var batch struct {
		Accepted, Failed int
		Results          []struct {
			Ack   *ackBody
			Error *struct{ Code, Field string }
		}
	}
	if code != 200 || json.Unmarshal(b, &batch) != nil || batch.Accepted != 2 || batch.Failed != 1 || batch.Results[2].Error.Field != "model" {
		t.Fatalf("batch: %d %s", code, b)
	}
	subs = append(subs, sub{"p-batch-1", batch.Results[0].Ack.RequestID}, sub{"p-batch-2", batch.Results[1].Ack.RequestID})

	// WebSocket: three submits in flight at once.
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(s.IngressURL, "http")+"/v1/ws", //nolint:bodyclose // the upgrade's response has no body to close
		&websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Bearer " + apptest.DevKey}}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	for i := range 3 {
		f := fmt.Sprintf(`{"type":"submit","id":"w%d","conversation_id":"p-ws-%d","model":"sim","messages":[{"role":"user","content":"over ws"}]}`, i, i)
		if err := ws.Write(ctx, websocket.MessageText, []byte(f)); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		_, data, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rep struct {
			Type, ID string
			Ack      *ackBody
		}
		if json.Unmarshal(data, &rep) != nil || rep.Type != "ack" || rep.Ack.ConversationID != "p-ws-"+rep.ID[1:] {
			t.Fatalf("ws: %s", data)
		}
		subs = append(subs, sub{rep.Ack.ConversationID, rep.Ack.RequestID})
	}
	ws.Close(websocket.StatusNormalClosure, "")

	// gRPC: unary and a stream.
	cc, err := grpc.NewClient(s.IngressGRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	gcl := pb.NewIngressClient(cc)
	gctx := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+apptest.DevKey)
	res, err := gcl.Submit(gctx, &pb.SubmitRequest{ConversationId: "p-grpc", Model: "sim", Messages: []*pb.Message{{Role: "user", Content: "over grpc"}}})
	if err != nil {
		t.Fatal(err)
	}
	subs = append(subs, sub{"p-grpc", res.GetAck().GetRequestId()})
	stream, err := gcl.SubmitStream(gctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		_ = stream.Send(&pb.SubmitStreamRequest{CorrelationId: strconv.Itoa(i), Request: &pb.SubmitRequest{
			ConversationId: fmt.Sprintf("p-grpcs-%d", i), Model: "sim", Messages: []*pb.Message{{Role: "user", Content: "over a grpc stream"}}}})
	}
	_ = stream.CloseSend()
	for range 3 {
		m, err := stream.Recv()
		if err != nil || m.GetAck() == nil {
			t.Fatalf("grpc stream: %v %v", m, err)
		}
		subs = append(subs, sub{"p-grpcs-" + m.GetCorrelationId(), m.GetAck().GetRequestId()})
	}

	for _, sb := range subs {
		waitAnswer(ctx, t, s.EgressURL, sb.conv, sb.requestID)
	}
}

// TestDirectJSONRecord produces a request as kcat would (JSON value, key,
// content-type header; no request ID) straight to the batch topic, and
// reads its answer from egress under the request ID derived from its
// position.
func TestDirectJSONRecord(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	s := apptest.StartStack(t, bin, apptest.StackOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec := &kgo.Record{
		Topic:   "switchboard.requests.batch",
		Key:     []byte("order-42"),
		Value:   []byte(`{"lane":"batch","tenant":"dev","model":"sim","messages":[{"role":"user","content":"Summarise order 42"}],"max_tokens":64,"metadata":{"order":"42"}}`),
		Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/json")}},
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	id := fmt.Sprintf("%s-%d-%d", rec.Topic, rec.Partition, rec.Offset)
	if data := waitAnswer(ctx, t, s.EgressURL, "order-42", id); !strings.Contains(data, `"order":"42"`) {
		t.Errorf("answer %s lacks the record's metadata", data)
	}
	// docs/RECORDS.md's franz-go example: the request ID from the header.
	rec = &kgo.Record{
		Topic: "switchboard.requests.batch",
		Key:   []byte("order-42"),
		Value: []byte(`{"tenant":"dev","model":"sim","messages":[{"role":"user","content":"Summarise order 42"}],"metadata":{"order":"42"}}`),
		Headers: []kgo.RecordHeader{
			{Key: "content-type", Value: []byte("application/json")},
			{Key: "request-id", Value: []byte("order-42-summary")},
		},
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitAnswer(ctx, t, s.EgressURL, "order-42", "order-42-summary")
}

// TestAdmissionWithRouterStopped stops the only router-worker: lag grows,
// ingress rejects batch work first (429) while interactive is still
// accepted, then interactive (503), both with Retry-After; a new worker
// drains the lag and both lanes are admitted again.
func TestAdmissionWithRouterStopped(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	t.Parallel() // waits more than it works: overlaps with the other waiting tests
	admissionWithRouterStopped(t, apptest.StackOptions{})
}

// admissionWithRouterStopped is TestAdmissionWithRouterStopped on a stack
// shaped by base.
func admissionWithRouterStopped(t *testing.T, base apptest.StackOptions) {
	base.IngressArgs = []string{"--batch-lag-high", "15", "--batch-lag-low", "5", "--interactive-lag-high", "30", "--interactive-lag-low", "10"}
	s := apptest.StartStack(t, bin, base)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	msg := func(lane string, i int) string {
		return fmt.Sprintf(`{"model":"sim","lane":"%s","messages":[{"role":"user","content":"%s %d"}]}`, lane, lane, i)
	}
	post := func(lane string, i int) (int, http.Header) {
		code, h, b := send(ctx, t, "POST", fmt.Sprintf("%s/v1/conversations/adm-%s-%d/messages", s.IngressURL, lane, i%40), msg(lane, i), nil)
		if code != 202 && code != 429 && code != 503 {
			t.Fatalf("%s %d: %d %s", lane, i, code, b)
		}
		return code, h
	}
	// Warm up: the group commits on both topics, so their lag is counted.
	for i, lane := range []string{"interactive", "batch"} {
		code, _, b := send(ctx, t, "POST", s.IngressURL+"/v1/conversations/warm-"+lane+"/messages", msg(lane, i), nil)
		var a ackBody
		if code != 202 || json.Unmarshal(b, &a) != nil {
			t.Fatalf("warm-up: %d %s", code, b)
		}
		waitAnswer(ctx, t, s.EgressURL, "warm-"+lane, a.RequestID)
	}
	for uncommitted(ctx, t, s) > 0 { // until the group has committed the warm-up
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Routers[0].Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}

	batchShedAt, interShedAt := -1, -1
	interAcceptedWhileBatchShed := 0
	for i := 0; i < 2000 && interShedAt < 0; i++ {
		bc, bh := post("batch", i)
		if bc == 429 && batchShedAt < 0 {
			batchShedAt = i
			if ra, _ := strconv.Atoi(bh.Get("Retry-After")); ra < 1 {
				t.Errorf("batch 429 with Retry-After %q", bh.Get("Retry-After"))
			}
		}
		ic, ih := post("interactive", i)
		switch {
		case ic == 503:
			interShedAt = i
			if ra, _ := strconv.Atoi(ih.Get("Retry-After")); ra < 1 {
				t.Errorf("interactive 503 with Retry-After %q", ih.Get("Retry-After"))
			}
		case ic == 202 && batchShedAt >= 0:
			interAcceptedWhileBatchShed++
		}
		time.Sleep(50 * time.Millisecond)
	}
	if batchShedAt < 0 || interShedAt < 0 {
		t.Fatalf("no shedding: batch at %d, interactive at %d", batchShedAt, interShedAt)
	}
	if interShedAt <= batchShedAt || interAcceptedWhileBatchShed == 0 {
		t.Errorf("batch shed at send %d, interactive at %d with %d interactive accepted in between: batch was not shed first",
			batchShedAt, interShedAt, interAcceptedWhileBatchShed)
	}

	// Recovery: a worker drains the lag; both lanes are admitted again.
	// Rejected posts add no lag; accepted ones would keep the lag (which
	// counts work finished since the last commit) near these tiny marks.
	s.StartRouter()
	admitted := func(lane string) bool {
		for i := range 200 {
			if code, _ := post(lane, 10000+i); code == 202 {
				return true
			}
			time.Sleep(300 * time.Millisecond)
		}
		return false
	}
	if !admitted("interactive") || !admitted("batch") {
		t.Fatal("lanes not admitted again after the lag drained")
	}
	_, _, metrics := send(ctx, t, "GET", s.IngressAdminURL+"/metrics", "", nil)
	for _, want := range []string{
		`switchboard_ingress_admission_changes_total{lane="batch",state="shedding"}`,
		`switchboard_ingress_admission_changes_total{lane="interactive",state="admitting"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
