package console

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/status"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

const testSpec = `
prefix: t.
defaults:
  partitions: 2
  replication_factor: 1
topics:
  - name: requests.interactive
  - name: requests.batch
  - name: results
  - name: deadletter
  - name: status
    partitions: 1
`

// harness is a kfake cluster with the spec's topics, a producer, and a
// console on it.
type harness struct {
	t    *testing.T
	spec *topicspec.Spec
	opts []kgo.Opt
	cl   *kgo.Client
	c    *Console
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	spec, err := topicspec.Parse([]byte(testSpec))
	if err != nil {
		t.Fatal(err)
	}
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, spec.Names()...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	h := &harness{t: t, spec: spec, opts: []kgo.Opt{kgo.SeedBrokers(kc.ListenAddrs()...)}}
	if h.cl, err = kgo.NewClient(h.opts...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.cl.Close)
	if h.c, err = New(Config{Kafka: kafkaconf.Config{Brokers: kc.ListenAddrs()}, Topics: spec, Groups: []string{"g"},
		Interval: 50 * time.Millisecond, DeadLetters: 3}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- h.c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return h
}

func (h *harness) produce(recs ...*kgo.Record) {
	h.t.Helper()
	if err := h.cl.ProduceSync(h.t.Context(), recs...).FirstErr(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) request(conv string) *kgo.Record {
	rec, err := envelope.EncodeRequest(h.spec.Name(topicspec.RequestsInteractive), &pb.Request{RequestId: "r-" + conv,
		ConversationId: conv, Model: "sim", Lane: envelope.LaneInteractive, Messages: []*pb.Message{{Role: "user", Content: "hi"}}})
	if err != nil {
		h.t.Fatal(err)
	}
	return rec
}

// waitFor polls the snapshot until ok holds (at most 20s).
func (h *harness) waitFor(what string, ok func(Snapshot) bool) Snapshot {
	h.t.Helper()
	var s Snapshot
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if s = h.c.Snapshot(); ok(s) {
			return s
		}
	}
	b, _ := json.MarshalIndent(s, "", " ")
	h.t.Fatalf("%s: not seen within 20s; last snapshot:\n%s", what, b)
	return s
}

func topicOf(s Snapshot, name string) Topic {
	for _, t := range s.Topics {
		if t.Name == name {
			return t
		}
	}
	return Topic{}
}

func sumEnd(t Topic) (n int64) {
	for _, p := range t.Partitions {
		n += p.End
	}
	return n
}

// TestGathersOffsetsLagAndMembers: the console shows each topic's end
// offsets and throughput, and the group's members, their partitions and
// the lag of each partition.
func TestGathersOffsetsLagAndMembers(t *testing.T) {
	h := newHarness(t)
	requests := h.spec.Name(topicspec.RequestsInteractive)
	h.produce(h.request("a"), h.request("a"), h.request("a"))
	s := h.waitFor("3 requests", func(s Snapshot) bool { return sumEnd(topicOf(s, requests)) == 3 })
	if len(s.Topics) != 5 {
		t.Errorf("got %d topics, want the spec's 5", len(s.Topics))
	}
	// Throughput: more records between two samples show as a rate.
	h.produce(h.request("b"), h.request("b"))
	h.waitFor("a rate on requests", func(s Snapshot) bool { return topicOf(s, requests).Rate > 0 })

	// A member of group g consumes and commits 1 record of conversation a's partition.
	member, err := kgo.NewClient(append(h.opts, kgo.ConsumerGroup("g"), kgo.ConsumeTopics(requests),
		kgo.DisableAutoCommit(), kgo.ClientID("worker-1"))...)
	if err != nil {
		t.Fatal(err)
	}
	defer member.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var first *kgo.Record
	for first == nil && ctx.Err() == nil {
		member.PollRecords(ctx, 1).EachRecord(func(r *kgo.Record) {
			if string(r.Key) == "a" && first == nil {
				first = r
			}
		})
	}
	if first == nil {
		t.Fatal("the member read no record of conversation a")
	}
	if err := member.CommitRecords(ctx, first); err != nil {
		t.Fatal(err)
	}
	s = h.waitFor("group g's member and its lag on a's partition", func(s Snapshot) bool {
		if len(s.Groups) != 1 || len(s.Groups[0].Members) != 1 {
			return false
		}
		for _, p := range topicOf(s, requests).Partitions {
			if p.Partition == first.Partition && p.End >= 3 && p.Lag["g"] == p.End-first.Offset-1 {
				return true
			}
		}
		return false
	})
	g := s.Groups[0]
	if g.Name != "g" || g.State != "Stable" || g.Members[0].ClientID != "worker-1" || len(g.Members[0].Partitions[requests]) != 2 {
		t.Errorf("group %+v: want g, Stable, member worker-1 holding both partitions", g)
	}
}

// TestGathersResultsDeadLettersAndStatus: terminal results make the chart's
// points (count, failures, p99 from their timings); dead letters are kept
// newest first up to the bound, with their reasons; status records show
// until their tombstone.
func TestGathersResultsDeadLettersAndStatus(t *testing.T) {
	h := newHarness(t) // its console reads 50 records back: the results below, whenever its reading starts
	results, dlq, st := h.spec.Name(topicspec.Results), h.spec.Name(topicspec.DeadLetter), h.spec.Name(topicspec.Status)
	now := time.Now()
	var recs []*kgo.Record
	for i := range 10 {
		res := &pb.Result{RequestId: fmt.Sprint("r", i), ConversationId: "c", Attempt: 1}
		if i == 9 {
			res.Body = &pb.Result_Error{Error: &pb.Error{Code: "backend_error"}}
		} else {
			res.Body = &pb.Result_Final{Final: &pb.Final{Content: "x", Timings: &pb.Timings{
				AcceptedAt: timestamppb.New(now.Add(-time.Duration(i+1) * 100 * time.Millisecond)), CompletedAt: timestamppb.New(now)}}}
		}
		rec, err := envelope.EncodeResult(results, res)
		if err != nil {
			t.Fatal(err)
		}
		rec.Timestamp = now
		recs = append(recs, rec)
	}
	chunk, _ := envelope.EncodeResult(results, &pb.Result{RequestId: "r0", ConversationId: "c", Body: &pb.Result_Chunk{Chunk: &pb.Chunk{}}})
	chunk.Timestamp = now
	recs = append(recs, chunk)
	h.produce(recs...)
	s := h.waitFor("the second of the results", func(s Snapshot) bool { // the dead-letter partitions are positioned now

		for _, p := range s.Series {
			if p.T == now.Unix() && p.Rate == 10 {
				return true
			}
		}
		return false
	})
	for _, p := range s.Series {
		if p.T == now.Unix() && (p.Failed != 1 || p.P99MS != 900) {
			t.Errorf("point %+v: want 10 answers, 1 failed, p99 900 ms (chunks not counted)", p)
		}
	}

	for i := range 5 {
		src := h.request(fmt.Sprint("d", i))
		src.Partition, src.Offset = 1, int64(i)
		dl, err := envelope.DeadLetter(dlq, src, "invalid_request", fmt.Sprint("bad ", i), fmt.Sprint("r-d", i), 1)
		if err != nil {
			t.Fatal(err)
		}
		dl.Key = []byte("same") // one partition: a known order
		h.produce(dl)
	}
	s = h.waitFor("5 dead letters", func(s Snapshot) bool { return s.DeadLettersSeen == 5 })
	if len(s.DeadLetters) != 3 || s.DeadLetters[0].Detail != "bad 4" || s.DeadLetters[2].Detail != "bad 2" ||
		s.DeadLetters[0].Reason != "invalid_request" || s.DeadLetters[0].SourceOffset != 4 {
		t.Errorf("dead letters %+v: want the newest 3, newest first, with reason and source", s.DeadLetters)
	}

	r := &status.Record{Service: status.ServiceRouter, Instance: "w-1", At: time.Now(), IntervalMS: 60000,
		Router: &status.Router{Group: "g", System: status.BreakerClosed, Backends: []status.Backend{{Name: "sim", Breaker: status.BreakerOpen}}}}
	v, err := status.Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	h.produce(&kgo.Record{Topic: st, Key: []byte("router-worker/w-1"), Value: v},
		&kgo.Record{Topic: st, Key: []byte("ingress/bad"), Value: []byte("{")})
	s = h.waitFor("the status record", func(s Snapshot) bool { return len(s.Instances) == 1 })
	if b := s.Instances[0].Router.Backends[0]; b.Breaker != status.BreakerOpen || s.Instances[0].Stale {
		t.Errorf("backend %+v, stale %v: want sim open, fresh", b, s.Instances[0].Stale)
	}
	if !strings.Contains(s.Problems["status"], "decode") {
		t.Errorf("problems %v: want the unreadable status record named", s.Problems)
	}
	h.produce(&kgo.Record{Topic: st, Key: []byte("router-worker/w-1")})
	h.waitFor("the tombstone", func(s Snapshot) bool { return len(s.Instances) == 0 })
}

// TestHandler: the page, its files, the snapshot and the event stream are
// served under /console, the streams bounded.
func TestHandler(t *testing.T) {
	h := newHarness(t)
	h.c.cfg.MaxStreams = 1
	h.c.streams = make(chan struct{}, 1)
	srv := httptest.NewServer(h.c.Handler())
	defer srv.Close()
	get := func(path string) (int, string, http.Header) {
		t.Helper()
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), resp.Header
	}
	for path, want := range map[string]string{"/console": "Switchboard console", "/console/": "Switchboard console",
		"/console/console.js": "EventSource", "/console/console.css": "breaker-open", "/console/favicon.svg": "<svg",
		"/console/api/snapshot": `"topics"`} {
		code, body, hdr := get(path)
		if code != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want 200 with %q", path, code, want)
		}
		if !strings.Contains(hdr.Get("Content-Security-Policy"), "default-src 'self'") {
			t.Errorf("GET %s: CSP %q, want default-src 'self'", path, hdr.Get("Content-Security-Policy"))
		}
	}
	if code, _, _ := get("/console/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /console/nothing: %d, want 404", code)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/console/api/events", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	events := 0
	for events < 2 && sc.Scan() {
		if data, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			var s Snapshot
			if err := json.Unmarshal([]byte(data), &s); err != nil {
				t.Fatalf("event data: %v", err)
			}
			events++
		}
	}
	if events != 2 {
		t.Fatalf("got %d events, want 2 (%v)", events, sc.Err())
	}
	if code, _, _ := get("/console/api/events"); code != http.StatusServiceUnavailable {
		t.Errorf("a second stream with MaxStreams 1: %d, want 503", code)
	}
}
