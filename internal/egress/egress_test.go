package egress

import (
	"fmt"
	"math"
	"strings"
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
		restart    bool
	}{
		{chunk("a", 1, 0), true, "", false},
		{chunk("a", 1, 1), true, "", false},
		{chunk("a", 1, 1), false, "repeated_chunk", false},
		{chunk("a", 1, 0), false, "repeated_chunk", false},
		{chunk("a", 2, 0), true, "", true}, // a retry starts over
		{chunk("a", 1, 2), false, "superseded_attempt", false},
		{chunk("a", 2, 1), true, "", false},
		{final("a", 2), true, "", false},
		{final("a", 2), false, "repeated_terminal", false},
		{chunk("a", 3, 0), false, "repeated_terminal", false},
		{final("b", 1), true, "", false},
		{final("c", 2), true, "", false}, // a later attempt, but nothing of the request was seen before
	}
	d := newDedupe()
	for i, s := range steps {
		ok, reason, restart := d.admit(s.res)
		if ok != s.ok || reason != s.dropReason || restart != s.restart {
			t.Errorf("step %d (%v): admit = %v %q %v, want %v %q %v", i, s.res, ok, reason, restart, s.ok, s.dropReason, s.restart)
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
		res     *pb.Result
		ok      bool
		reason  string
		restart bool
	}{
		{run("a", "A", 1, 0, false), true, "", false},
		{run("a", "A", 2, 0, false), true, "", true},
		{run("a", "A", 2, 1, false), true, "", false},
		{run("a", "B", 1, 0, false), true, "", true}, // the rerun starts over at attempt 1
		{run("a", "A", 2, 2, false), false, "superseded_run", false},
		{run("a", "B", 1, 0, false), false, "repeated_chunk", false},
		{run("a", "B", 1, 1, false), true, "", false},
		{run("a", "B", 1, 0, true), true, "", false},
		{run("a", "C", 1, 0, false), false, "repeated_terminal", false},
	}
	d := newDedupe()
	for i, s := range steps {
		ok, reason, restart := d.admit(s.res)
		if ok != s.ok || reason != s.reason || restart != s.restart {
			t.Errorf("step %d: admit = %v %q %v, want %v %q %v", i, ok, reason, restart, s.ok, s.reason, s.restart)
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

func TestCursorTokens(t *testing.T) {
	k, err := newCursorCodec([]byte("secret"))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := newCursorCodec([]byte("another secret"))
	for _, c := range []cursor{{partition: 3, offset: 42}, {offset: -1}, {partition: 11, offset: 1 << 40},
		{partition: 2, offset: 737373, at: 1_700_000_000_123, origin: originTag("cluster"), ident: 99}, {partition: 1, offset: 313131, ident: 5},
		{partition: 2, offset: 50, held: 48}, // a transactional result's
		{partition: 7, offset: math.MaxInt64 - 1, at: math.MaxInt64, origin: math.MaxUint64, ident: math.MaxUint64, held: math.MaxInt64 - 1}} {
		tok := k.seal("t1", "conv", c)
		prefix := cursorPrefix
		if c.located() {
			prefix = cursorPrefixV2
		}
		if strings.Contains(tok, fmt.Sprint(c.offset)) || !strings.HasPrefix(tok, prefix) || len(tok) > maxCursorLen {
			t.Errorf("token %q shows the position %v", tok, c)
		}
		if got, err := k.open("t1", "conv", tok); err != nil || got != c {
			t.Errorf("open(seal(%v)) = %v, %v", c, got, err)
		}
		if tok != k.seal("t1", "conv", c) {
			t.Error("sealing the same cursor twice gives two tokens")
		}
		for _, bad := range []struct{ tenant, conv, tok string }{
			{"t2", "conv", tok},              // another tenant
			{"t1", "conv2", tok},             // another conversation
			{"t1", "conv", tok[:len(tok)-2]}, // cut
			{"t1", "conv", tok + "A"},        // longer
			{"t1", "conv", c.String()},       // the raw position
		} {
			if _, err := k.open(bad.tenant, bad.conv, bad.tok); err == nil {
				t.Errorf("open(%q, %q, %q) accepted", bad.tenant, bad.conv, bad.tok)
			}
		}
		if _, err := other.open("t1", "conv", tok); err == nil {
			t.Error("an egress with another secret opened the cursor")
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
