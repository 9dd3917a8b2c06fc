package redrive

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

type fixture struct {
	spec    *topicspec.Spec
	brokers []string
	cl      *kgo.Client
	ids     map[string][]string // conversation -> request IDs dead-lettered with backend_error, in order
}

// newFixture starts an embedded broker with the topics and fills the
// dead-letter topic: 6 conversations with 3 backend_error dead letters
// each, interleaved, plus one unknown_model and one undecodable record.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3,
		spec.Name(topicspec.RequestsInteractive), spec.Name(topicspec.RequestsBatch), spec.Name(topicspec.Results), spec.Name(topicspec.DeadLetter)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	f := &fixture{spec: spec, brokers: c.ListenAddrs(), cl: cl, ids: map[string][]string{}}

	dlq := spec.Name(topicspec.DeadLetter)
	var recs []*kgo.Record
	add := func(conv, lane, model, reason string, seq int) {
		topic := spec.Name(topicspec.RequestsInteractive)
		if lane == envelope.LaneBatch {
			topic = spec.Name(topicspec.RequestsBatch)
		}
		req := &pb.Request{
			RequestId: fmt.Sprintf("%s-%d", conv, seq), ConversationId: conv, Tenant: "default", Lane: lane, Model: model,
			Messages: []*pb.Message{{Role: "user", Content: fmt.Sprintf("message %d", seq)}},
			Metadata: map[string]string{"seq": fmt.Sprint(seq)},
			Deadline: timeNow(-time.Hour),
		}
		src, err := envelope.EncodeRequest(topic, req)
		if err != nil {
			t.Fatal(err)
		}
		src.Partition, src.Offset = 0, int64(len(recs))
		dl, err := envelope.DeadLetter(dlq, src, reason, "failed", req.RequestId, 3)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, dl)
		if reason == "backend_error" {
			f.ids[conv] = append(f.ids[conv], req.RequestId)
		}
	}
	for seq := range 3 {
		for c := range 6 {
			lane := envelope.LaneInteractive
			if c%2 == 1 {
				lane = envelope.LaneBatch
			}
			add(fmt.Sprintf("conv-%d", c), lane, "sim", "backend_error", seq)
		}
	}
	add("conv-x", envelope.LaneInteractive, "nope", "unknown_model", 0)
	recs = append(recs, &kgo.Record{Topic: dlq, Key: []byte("conv-y"), Value: []byte("not a dead letter")})
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	return f
}

func timeNow(d time.Duration) *timestamppb.Timestamp { return timestamppb.New(time.Now().Add(d)) }

func (f *fixture) run(t *testing.T, cfg Config) (Report, []Line) {
	t.Helper()
	var out bytes.Buffer
	cfg.Kafka = kafkaconf.Config{Brokers: f.brokers}
	cfg.Topics = f.spec
	cfg.Out = &out
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	var lines []Line
	dec := json.NewDecoder(&out)
	for dec.More() {
		var l Line
		if err := dec.Decode(&l); err != nil {
			t.Fatal(err)
		}
		lines = append(lines, l)
	}
	return rep, lines
}

// requests reads everything in both requests topics.
func (f *fixture) requests(t *testing.T) map[string][]*pb.Request {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	topics := []string{f.spec.Name(topicspec.RequestsInteractive), f.spec.Name(topicspec.RequestsBatch)}
	cl, err := kgo.NewClient(kgo.SeedBrokers(f.brokers...), kgo.ConsumeTopics(topics...), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topics...)
	if err != nil {
		t.Fatal(err)
	}
	want := int64(0)
	ends.Each(func(o kadm.ListedOffset) { want += o.Offset })
	got := map[string][]*pb.Request{}
	for n := int64(0); n < want; {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("read %d of %d requests", n, want)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			n++
			req, err := envelope.DecodeRequest(r)
			if err != nil {
				t.Errorf("re-driven record does not decode: %v", err)
				return
			}
			got[req.ConversationId] = append(got[req.ConversationId], req)
		})
	}
	return got
}

func TestListOnlyProducesNothing(t *testing.T) {
	f := newFixture(t)
	rep, lines := f.run(t, Config{})
	if rep.Read != 20 || rep.WouldRedrive != 19 || rep.Skipped != 1 || rep.Redriven != 0 {
		t.Errorf("report = %+v, want 20 read, 19 would redrive, 1 skipped", rep)
	}
	if len(lines) != 20 {
		t.Errorf("%d report lines, want 20", len(lines))
	}
	if got := f.requests(t); len(got) != 0 {
		t.Errorf("listing produced requests: %v", got)
	}
	// Listing commits nothing: an executing run still sees everything.
	if rep, _ := f.run(t, Config{Execute: true}); rep.Read != 20 {
		t.Errorf("after a listing, an executing run read %d, want 20", rep.Read)
	}
}

func TestRedriveKeepsConversationOrderAndCommitsProgress(t *testing.T) {
	f := newFixture(t)
	rep, lines := f.run(t, Config{Execute: true, Reasons: []string{"backend_error"}})
	if rep.Redriven != 18 || rep.Filtered != 1 || rep.Skipped != 1 {
		t.Errorf("report = %+v, want 18 re-driven, 1 filtered, 1 skipped", rep)
	}
	byOld := map[string]Line{}
	for _, l := range lines {
		byOld[l.RequestID] = l
	}
	got := f.requests(t)
	if len(got) != 6 {
		t.Fatalf("re-driven conversations = %d, want 6", len(got))
	}
	for conv, ids := range f.ids {
		reqs := got[conv]
		if len(reqs) != len(ids) {
			t.Errorf("%s: %d requests re-driven, want %d", conv, len(reqs), len(ids))
			continue
		}
		for i, req := range reqs {
			if req.Metadata["redrive_of"] != ids[i] || req.Metadata["seq"] != fmt.Sprint(i) {
				t.Errorf("%s request %d: redrive_of %q seq %q, want %q seq %d (order kept)", conv, i, req.Metadata["redrive_of"], req.Metadata["seq"], ids[i], i)
			}
			if req.RequestId == ids[i] || req.RequestId != byOld[ids[i]].NewRequestID {
				t.Errorf("%s request %d: request_id %q, want the new ID %q", conv, i, req.RequestId, byOld[ids[i]].NewRequestID)
			}
			if req.Deadline != nil {
				t.Errorf("%s request %d kept its passed deadline", conv, i)
			}
		}
	}
	// Progress was committed: a second run finds nothing new.
	if rep, _ := f.run(t, Config{Execute: true}); rep.Read != 0 {
		t.Errorf("second run read %d dead letters, want 0", rep.Read)
	}
	// FromStart reads everything again.
	if rep, _ := f.run(t, Config{FromStart: true}); rep.Read != 20 {
		t.Errorf("--from-start run read %d, want 20", rep.Read)
	}
}

func TestRedriveSelectsConversationsAndStopsAtLimit(t *testing.T) {
	f := newFixture(t)
	rep, _ := f.run(t, Config{Execute: true, Conversations: []string{"conv-2"}})
	if rep.Redriven != 3 || rep.Filtered != 16 {
		t.Errorf("report = %+v, want 3 re-driven, 16 filtered", rep)
	}
	got := f.requests(t)
	if len(got) != 1 || len(got["conv-2"]) != 3 {
		t.Errorf("re-driven = %v, want conv-2's 3 requests", got)
	}

	g := newFixture(t)
	first, _ := g.run(t, Config{Execute: true, Limit: 5, Reasons: []string{"backend_error"}})
	if first.Redriven != 5 {
		t.Errorf("limited run re-drove %d, want 5", first.Redriven)
	}
	second, _ := g.run(t, Config{Execute: true, Reasons: []string{"backend_error"}})
	if first.Redriven+second.Redriven != 18 {
		t.Errorf("two runs re-drove %d + %d, want 18 in all", first.Redriven, second.Redriven)
	}
	for conv, reqs := range g.requests(t) {
		for i, req := range reqs {
			if req.Metadata["seq"] != fmt.Sprint(i) {
				t.Errorf("%s: request %d has seq %s: order broken across limited runs", conv, i, req.Metadata["seq"])
			}
		}
	}
}
