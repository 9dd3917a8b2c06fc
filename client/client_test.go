package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-llm/switchboard/client"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/router"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const resultsTopic = "switchboard.results"

func newPipeline(t *testing.T, mod func(*router.Config)) *pipeline {
	t.Helper()
	p, err := startPipeline(mod)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.stop(); err != nil {
			t.Error(err)
		}
	})
	return p
}

func newClient(t *testing.T, brokers []string, enc client.Encoding) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Kafka: []kgo.Opt{kgo.SeedBrokers(brokers...)}, Encoding: enc})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func open(t *testing.T, c *client.Client, conv string, opts client.ReadOptions) *client.Reader {
	t.Helper()
	r, err := c.Results(t.Context(), conv, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// next reads the next result, failing the test after a generous bound.
func next(t *testing.T, r *client.Reader) client.Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	res, err := r.Next(ctx)
	if err != nil {
		t.Fatalf("next result: %v", err)
	}
	return res
}

// answer reads until requestID's terminal result and returns it with the
// chunks' text.
func answer(t *testing.T, r *client.Reader, requestID string) (client.Result, string) {
	t.Helper()
	var text strings.Builder
	for range 1000 {
		res := next(t, r)
		if res.RequestID != requestID {
			t.Fatalf("result of %s, want %s (out of order)", res.RequestID, requestID)
		}
		if res.Terminal() {
			return res, text.String()
		}
		text.WriteString(res.Chunk.Delta)
	}
	t.Fatal("no terminal result within 1000 results")
	return client.Result{}, ""
}

func userRequest(conv, content string, stream bool) client.Request {
	return client.Request{ConversationID: conv, Tenant: "dev", Model: "sim", Stream: stream, MaxTokens: 12,
		Messages: []client.Message{{Role: "user", Content: content}}, Metadata: map[string]string{"content": content}}
}

// TestSendAndRead: requests sent through the client, in either encoding,
// are answered by router-worker writing results in either encoding, and
// the client reads them back in order: chunks that add up to the final
// answer, metadata copied, one terminal result per request.
func TestSendAndRead(t *testing.T) {
	for _, tc := range []struct {
		name    string
		enc     client.Encoding
		results string
	}{
		{"protobuf requests, protobuf results", client.Protobuf, "protobuf"},
		{"json requests, json results", client.JSON, "json"},
		{"protobuf requests, json results", client.Protobuf, "json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPipeline(t, func(c *router.Config) { c.ResultsEncoding = tc.results })
			c := newClient(t, p.brokers, tc.enc)
			r := open(t, c, "conv-a", client.ReadOptions{})
			var ids []string
			for i, content := range []string{"first", "second", "third"} {
				ack, err := c.Send(t.Context(), userRequest("conv-a", content, i != 1))
				if err != nil {
					t.Fatal(err)
				}
				if ack.Topic != "switchboard.requests.interactive" || ack.RequestID == "" {
					t.Errorf("ack = %+v", ack)
				}
				ids = append(ids, ack.RequestID)
			}
			for i, id := range ids {
				res, text := answer(t, r, id)
				if res.Final == nil {
					t.Fatalf("request %d: terminal %+v, want a final answer", i, res.Error)
				}
				if i != 1 && (text == "" || text != res.Final.Content) {
					t.Errorf("request %d: chunks %q, final %q", i, text, res.Final.Content)
				}
				if i == 1 && text != "" {
					t.Errorf("unstreamed request got chunks %q", text)
				}
				if res.Final.Backend != "sim" || res.Final.Usage.CompletionTokens == 0 || res.Final.Timings.CompletedAt.IsZero() ||
					res.Metadata["content"] == "" || res.ConversationID != "conv-a" || res.Tenant != "dev" || res.RunID == "" || res.Attempt != 1 {
					t.Errorf("request %d: result %+v, final %+v", i, res, res.Final)
				}
				if res.Partition != r.Partition() {
					t.Errorf("result partition %d, reader's %d", res.Partition, r.Partition())
				}
			}
			// The results are on the topic in the encoding asked for.
			raw := rawRecords(t, p.brokers, resultsTopic, 1)
			want := envelope.EncodingProtobuf.ContentType()
			if tc.results == "json" {
				want = envelope.ContentTypeJSON
			}
			if got := envelope.Header(raw[0], envelope.HeaderContentType); got != want {
				t.Errorf("results content-type %q, want %q", got, want)
			}
		})
	}
}

// rawRecords reads at least n records of topic from the start.
func rawRecords(t *testing.T, brokers []string, topic string, n int) []*kgo.Record {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var out []*kgo.Record
	for len(out) < n {
		f := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d records of %s", len(out), n, topic)
		}
		out = append(out, f.Records()...)
	}
	return out
}

// TestRecord: the request record is what ingress writes and RECORDS.md
// documents: the lane's topic, keyed by conversation ID, content-type,
// schema-version and request-id headers, a value router-worker decodes.
func TestRecord(t *testing.T) {
	req := userRequest("order-42", "Summarise order 42", true)
	req.Lane = client.LaneBatch
	req.IdempotencyKey = "order-42-summary"
	for _, enc := range []client.Encoding{client.Protobuf, client.JSON} {
		c, err := client.New(client.Config{Kafka: []kgo.Opt{kgo.SeedBrokers("127.0.0.1:1")}, Encoding: enc, TopicPrefix: "acme."})
		if err != nil {
			t.Fatal(err)
		}
		rec, err := c.Record(req)
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if rec.Topic != "acme.requests.batch" || string(rec.Key) != "order-42" {
			t.Errorf("topic %s, key %s; want acme.requests.batch, order-42", rec.Topic, rec.Key)
		}
		wantID := client.RequestIDForKey("dev", "order-42-summary")
		wantCT := map[client.Encoding]string{client.Protobuf: "application/x-protobuf", client.JSON: "application/json"}[enc]
		if got := envelope.Header(rec, "content-type"); got != wantCT {
			t.Errorf("content-type %q, want %q", got, wantCT)
		}
		if envelope.Header(rec, "schema-version") != "1" || envelope.Header(rec, "request-id") != wantID {
			t.Errorf("headers %v, want schema-version 1 and request-id %s", rec.Headers, wantID)
		}
		if enc == client.JSON && !json.Valid(rec.Value) {
			t.Errorf("JSON value %s is not JSON", rec.Value)
		}
		got, err := envelope.DecodeRequest(rec)
		if err != nil {
			t.Fatal(err)
		}
		want := &pb.Request{RequestId: wantID, ConversationId: "order-42", Tenant: "dev", Lane: "batch", Model: "sim", Stream: true,
			MaxTokens: 12, Messages: []*pb.Message{{Role: "user", Content: "Summarise order 42"}},
			Metadata: map[string]string{"content": "Summarise order 42"}, AcceptedAt: got.GetAcceptedAt()}
		if got.GetAcceptedAt() == nil || !proto.Equal(got, want) {
			t.Errorf("decoded %v, want %v", got, want)
		}
	}
}

func TestLanesAreTheContract(t *testing.T) {
	if client.LaneInteractive != envelope.LaneInteractive || client.LaneBatch != envelope.LaneBatch {
		t.Errorf("lanes %q %q, want envelope's %q %q", client.LaneInteractive, client.LaneBatch, envelope.LaneInteractive, envelope.LaneBatch)
	}
}

func TestRecordRejectsInvalidRequests(t *testing.T) {
	c := newClient(t, []string{"127.0.0.1:1"}, client.Protobuf)
	for _, tc := range []struct {
		name string
		mod  func(*client.Request)
		want string
	}{
		{"no model", func(r *client.Request) { r.Model = "" }, "model"},
		{"bad conversation", func(r *client.Request) { r.ConversationID = "a b" }, "conversation_id"},
		{"no messages", func(r *client.Request) { r.Messages = nil }, "messages"},
		{"bad role", func(r *client.Request) { r.Messages[0].Role = "robot" }, "role"},
		{"bad lane", func(r *client.Request) { r.Lane = "fast" }, "lane"},
		{"both IDs", func(r *client.Request) { r.RequestID, r.IdempotencyKey = "r", "k" }, "not both"},
		{"key with a space", func(r *client.Request) { r.IdempotencyKey = "order 42" }, "IdempotencyKey"},
		{"key too long", func(r *client.Request) { r.IdempotencyKey = strings.Repeat("k", 256) }, "IdempotencyKey"},
	} {
		req := userRequest("c", "hi", false)
		tc.mod(&req)
		_, err := c.Record(req)
		if !errors.Is(err, client.ErrInvalidRequest) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want ErrInvalidRequest naming %q", tc.name, err, tc.want)
		}
		if _, err := c.Send(t.Context(), req); !errors.Is(err, client.ErrInvalidRequest) {
			t.Errorf("%s: Send error %v, want ErrInvalidRequest", tc.name, err)
		}
	}
	if _, err := c.Record(userRequest("c", "hi", false)); err != nil {
		t.Errorf("valid request: %v", err)
	}
}

// produceResults writes results for conv straight to the results topic, as
// router-worker would, in enc.
func produceResults(t *testing.T, brokers []string, enc envelope.Encoding, results ...*pb.Result) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, res := range results {
		rec, err := envelope.EncodeResultAs(resultsTopic, res, enc)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
}

func chunk(conv, req, run string, attempt, i int32, d string) *pb.Result {
	return &pb.Result{RequestId: req, ConversationId: conv, RunId: run, Attempt: attempt,
		Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: i, Delta: d}}}
}

func final(conv, req, run, content string) *pb.Result {
	return &pb.Result{RequestId: req, ConversationId: conv, RunId: run, Attempt: 1,
		Body: &pb.Result_Final{Final: &pb.Final{Content: content, FinishReason: "stop"}}}
}

// samePartition returns a conversation ID other than conv whose results
// land on conv's partition of a 4-partition topic.
func samePartition(t *testing.T, conv string) string {
	for i := range 10000 {
		other := "other-" + strings.Repeat("x", i%3) + string(rune('a'+i%26)) + "-" + time.Duration(i).String()
		if envelope.Partition(other, 4) == envelope.Partition(conv, 4) && envelope.ValidConversationID(other) {
			return other
		}
	}
	t.Fatal("no conversation on the same partition")
	return ""
}

// TestReaderOrderResumeAndFilters: a reader yields its conversation's
// results in order and skips other conversations on its partition; one
// reopened At(offset+1) resumes after the last result handled; AtStart
// and AtTime start where they say; RequestID keeps one request's results.
func TestReaderOrderResumeAndFilters(t *testing.T) {
	p := newPipeline(t, nil)
	c := newClient(t, p.brokers, client.Protobuf)
	conv := "conv-r"
	other := samePartition(t, conv)
	before := time.Now().Add(-time.Second)
	produceResults(t, p.brokers, envelope.EncodingJSON,
		chunk(conv, "r1", "u", 1, 0, "a"), chunk(other, "o1", "u", 1, 0, "zz"), chunk(conv, "r1", "u", 1, 1, "b"),
		final(conv, "r1", "u", "ab"))
	produceResults(t, p.brokers, envelope.EncodingProtobuf, final(other, "o1", "u", "zz"), final(conv, "r2", "v", "c"))

	type step struct{ req, what string }
	describe := func(res client.Result) step {
		switch {
		case res.Chunk != nil:
			return step{res.RequestID, res.Chunk.Delta}
		case res.Final != nil:
			return step{res.RequestID, "final " + res.Final.Content}
		}
		return step{res.RequestID, "error"}
	}
	want := []step{{"r1", "a"}, {"r1", "b"}, {"r1", "final ab"}, {"r2", "final c"}}

	r := open(t, c, conv, client.ReadOptions{From: client.AtStart()})
	var got []client.Result
	for range want {
		got = append(got, next(t, r))
	}
	for i, res := range got {
		if s := describe(res); s != want[i] {
			t.Errorf("result %d = %v, want %v", i, s, want[i])
		}
	}
	// Resume after the second result.
	r2 := open(t, c, conv, client.ReadOptions{From: client.At(got[1].Offset + 1)})
	if s := describe(next(t, r2)); s != want[2] {
		t.Errorf("resumed at %d: %v, want %v", got[1].Offset+1, s, want[2])
	}
	r3 := open(t, c, conv, client.ReadOptions{From: client.AtTime(before), RequestID: "r2"})
	if s := describe(next(t, r3)); s != want[3] {
		t.Errorf("request filter: %v, want %v", s, want[3])
	}
	if _, err := c.Results(t.Context(), conv, client.ReadOptions{From: client.At(-1)}); err == nil || !strings.Contains(err.Error(), "offset -1") {
		t.Errorf("At(-1): %v, want an error naming the offset", err)
	}
	if _, err := c.Results(t.Context(), "a b", client.ReadOptions{}); !errors.Is(err, client.ErrInvalidRequest) {
		t.Errorf("bad conversation ID: %v, want ErrInvalidRequest", err)
	}
	// AtEnd sees only what comes after it opened.
	r4 := open(t, c, conv, client.ReadOptions{})
	produceResults(t, p.brokers, envelope.EncodingProtobuf, final(conv, "r3", "w", "d"))
	if s := describe(next(t, r4)); s != (step{"r3", "final d"}) {
		t.Errorf("at end: %v, want r3's final", s)
	}
}

// TestReaderDropsRepeats: repeated chunks and terminal results (a rerun,
// a repeat answered with a copy) are dropped unless KeepDuplicates; a new
// run's chunks are kept (they restart the answer).
func TestReaderDropsRepeats(t *testing.T) {
	p := newPipeline(t, nil)
	c := newClient(t, p.brokers, client.Protobuf)
	conv := "conv-d"
	all := []*pb.Result{
		chunk(conv, "r1", "u", 1, 0, "a"), chunk(conv, "r1", "u", 1, 0, "a"), // repeat
		chunk(conv, "r1", "v", 1, 0, "a"),                        // a new run restarts
		final(conv, "r1", "v", "a"), final(conv, "r1", "u", "a"), // repeat of the terminal
		chunk(conv, "r1", "w", 1, 0, "late"), // after the terminal
		final(conv, "r2", "x", "b"),
	}
	produceResults(t, p.brokers, envelope.EncodingProtobuf, all...)
	r := open(t, c, conv, client.ReadOptions{From: client.AtStart()})
	wantKept := []string{"r1 u chunk", "r1 v chunk", "r1 v final", "r2 x final"}
	for i, w := range wantKept {
		res := next(t, r)
		kind := "chunk"
		if res.Final != nil {
			kind = "final"
		}
		if got := res.RequestID + " " + res.RunID + " " + kind; got != w {
			t.Errorf("result %d = %s, want %s", i, got, w)
		}
	}
	r2 := open(t, c, conv, client.ReadOptions{From: client.AtStart(), KeepDuplicates: true})
	for i := range all {
		res := next(t, r2)
		if res.RequestID != all[i].GetRequestId() || res.RunID != all[i].GetRunId() {
			t.Errorf("with duplicates, result %d = %s %s, want %s %s", i, res.RequestID, res.RunID, all[i].GetRequestId(), all[i].GetRunId())
		}
	}
}

// TestReaderDecodeErrors: a record of the conversation that is not a
// result comes back as a *DecodeError that says where it is and what is
// wrong; the reader goes on with the next record.
func TestReaderDecodeErrors(t *testing.T) {
	p := newPipeline(t, nil)
	c := newClient(t, p.brokers, client.Protobuf)
	conv := "conv-e"
	cl, err := kgo.NewClient(kgo.SeedBrokers(p.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	bad := []*kgo.Record{
		{Topic: resultsTopic, Key: []byte(conv), Value: []byte(`{"request_id":"r1","chunk":`),
			Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/json")}}},
		{Topic: resultsTopic, Key: []byte(conv), Value: []byte("x"),
			Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("text/plain")}}},
		{Topic: resultsTopic, Key: []byte(conv), Value: []byte{0x0a, 0x02, 'r', '1'}}, // no body
	}
	for _, rec := range bad {
		if err := cl.ProduceSync(t.Context(), rec).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	produceResults(t, p.brokers, envelope.EncodingJSON, final(conv, "r2", "u", "fine"))
	r := open(t, c, conv, client.ReadOptions{From: client.AtStart()})
	for i, want := range []string{"json", `unsupported content-type "text/plain"`, "without request_id or body"} {
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		_, err := r.Next(ctx)
		cancel()
		var de *client.DecodeError
		if !errors.As(err, &de) || !errors.Is(err, client.ErrDecode) {
			t.Fatalf("record %d: error %v, want a *DecodeError", i, err)
		}
		if de.Topic != resultsTopic || de.Offset != bad[i].Offset || de.Partition != bad[i].Partition ||
			!strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), resultsTopic) {
			t.Errorf("record %d: %v (at %d/%d), want the record's place and %q", i, err, de.Partition, de.Offset, want)
		}
	}
	if res := next(t, r); res.Final == nil || res.Final.Content != "fine" {
		t.Errorf("after the bad records: %+v, want the final result", res)
	}
	r.Close()
	if _, err := r.Next(t.Context()); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Next after Close: %v, want ErrClosed", err)
	}
	// Close from another goroutine ends a Next that waits.
	w := open(t, c, conv, client.ReadOptions{})
	done := make(chan error, 1)
	go func() {
		_, err := w.Next(t.Context())
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Next wait (it ends either way)
	w.Close()
	select {
	case err := <-done:
		if !errors.Is(err, client.ErrClosed) {
			t.Errorf("waiting Next after Close: %v, want ErrClosed", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Close did not end a waiting Next within 30s")
	}
}
