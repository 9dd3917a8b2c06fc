package egress

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func chunk(id string, attempt, index int32) *pb.Result {
	return &pb.Result{RequestId: id, Attempt: attempt, Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: index}}}
}

func final(id string, attempt int32) *pb.Result {
	return &pb.Result{RequestId: id, Attempt: attempt, Body: &pb.Result_Final{Final: &pb.Final{Content: "x"}}}
}

func TestDedupe(t *testing.T) {
	steps := []struct {
		res        *pb.Result
		ok         bool
		dropReason string
	}{
		{chunk("a", 1, 0), true, ""},
		{chunk("a", 1, 1), true, ""},
		{chunk("a", 1, 1), false, "repeated_chunk"},
		{chunk("a", 1, 0), false, "repeated_chunk"},
		{chunk("a", 2, 0), true, ""}, // a retry starts over
		{chunk("a", 1, 2), false, "superseded_attempt"},
		{chunk("a", 2, 1), true, ""},
		{final("a", 2), true, ""},
		{final("a", 2), false, "repeated_terminal"},
		{chunk("a", 3, 0), false, "repeated_terminal"},
		{final("b", 1), true, ""},
	}
	d := newDedupe()
	for i, s := range steps {
		ok, reason := d.admit(s.res)
		if ok != s.ok || reason != s.dropReason {
			t.Errorf("step %d (%v): admit = %v %q, want %v %q", i, s.res, ok, reason, s.ok, s.dropReason)
		}
	}
}

// TestDedupeRuns: a rerun (new run_id) restarts the answer like a later
// attempt; the old run's late results and a run after the answer are
// dropped.
func TestDedupeRuns(t *testing.T) {
	run := func(id, run string, attempt, index int32, fin bool) *pb.Result {
		r := chunk(id, attempt, index)
		if fin {
			r = final(id, attempt)
		}
		r.RunId = run
		return r
	}
	steps := []struct {
		res    *pb.Result
		ok     bool
		reason string
	}{
		{run("a", "A", 1, 0, false), true, ""},
		{run("a", "A", 2, 0, false), true, ""},
		{run("a", "A", 2, 1, false), true, ""},
		{run("a", "B", 1, 0, false), true, ""}, // the rerun starts over at attempt 1
		{run("a", "A", 2, 2, false), false, "superseded_run"},
		{run("a", "B", 1, 0, false), false, "repeated_chunk"},
		{run("a", "B", 1, 1, false), true, ""},
		{run("a", "B", 1, 0, true), true, ""},
		{run("a", "C", 1, 0, false), false, "repeated_terminal"},
	}
	d := newDedupe()
	for i, s := range steps {
		ok, reason := d.admit(s.res)
		if ok != s.ok || reason != s.reason {
			t.Errorf("step %d: admit = %v %q, want %v %q", i, ok, reason, s.ok, s.reason)
		}
	}
}

func TestDedupeForgetsOldest(t *testing.T) {
	d := newDedupe()
	for i := range maxTracked + 10 {
		d.admit(final(string(rune('a'+i%26))+string(rune(i)), 1))
	}
	if len(d.reqs) != maxTracked || len(d.order) != maxTracked {
		t.Errorf("tracking %d/%d requests, want at most %d", len(d.reqs), len(d.order), maxTracked)
	}
}

func TestParseCursor(t *testing.T) {
	tests := []struct {
		in   string
		want cursor
		ok   bool
	}{
		{"3:42", cursor{3, 42}, true},
		{"0:0", cursor{0, 0}, true},
		{"3", cursor{}, false},
		{"a:1", cursor{}, false},
		{"1:-5", cursor{}, false},
		{"1:-1", cursor{1, -1}, true},
		{"-1:5", cursor{}, false},
		{"1:2:3", cursor{}, false},
		{"0:9223372036854775807", cursor{}, false}, // the next offset would overflow
	}
	for _, tt := range tests {
		got, err := parseCursor(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseCursor(%q) = %v, %v; want %v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("String() = %q, want %q", got.String(), tt.in)
		}
	}
}

func resultRecord(t *testing.T, conv string, offset int64) *kgo.Record {
	t.Helper()
	rec, err := envelope.EncodeResult("results", &pb.Result{RequestId: "r", ConversationId: conv, Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: int32(offset)}}})
	if err != nil {
		t.Fatal(err)
	}
	rec.Partition, rec.Offset = 0, offset
	return rec
}

// TestSlowSubscriberIsCutOff checks that a subscriber whose buffer is full
// is ended with reason overflow while others keep receiving, and that
// subscribe reports the live feed's start offset.
func TestSlowSubscriberIsCutOff(t *testing.T) {
	h := newHub(newMetrics(prometheus.NewRegistry()), nil)
	h.start(map[int32]int64{0: 10}, time.Now(), time.Now())
	slow, from, _, _ := h.subscribe("c", 0, 2, 10)
	if from != 10 {
		t.Fatalf("live feed starts at %d, want 10", from)
	}
	fast, _, _, _ := h.subscribe("c", 0, 100, 10)
	other, _, _, _ := h.subscribe("d", 0, 1, 10)
	for o := int64(10); o < 13; o++ {
		h.publish(resultRecord(t, "c", o))
	}
	select {
	case <-slow.done:
		if slow.reason != "overflow" {
			t.Errorf("slow reason = %q, want overflow", slow.reason)
		}
	default:
		t.Fatal("the slow subscriber was not cut off")
	}
	if len(fast.ch) != 3 {
		t.Errorf("fast subscriber holds %d events, want 3", len(fast.ch))
	}
	if len(other.ch) != 0 {
		t.Errorf("another conversation's subscriber got %d events, want 0", len(other.ch))
	}
	if _, from, _, _ := h.subscribe("c", 0, 1, 13); from != 13 {
		t.Errorf("after three records the live feed starts at %d, want 13", from)
	}
	h.unsubscribe(slow) // already removed: a no-op
	h.closeAll()
	select {
	case <-fast.done:
	default:
		t.Error("closeAll left a subscriber open")
	}
}
