package router

import (
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kadm"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func TestSeenSet(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	type step struct {
		id     string
		offset int64
		at     time.Duration // after t0
		want   bool          // a repeat
	}
	for _, tc := range []struct {
		name   string
		window time.Duration
		maxIDs int
		steps  []step
	}{
		{"another offset is a repeat", time.Minute, 10, []step{
			{"a", 0, 0, false}, {"b", 1, 0, false}, {"a", 2, 0, true}, {"a", 3, 0, true},
		}},
		{"the same offset is the same record again", time.Minute, 10, []step{
			{"a", 5, 0, false}, {"a", 5, 0, false}, {"a", 6, 0, true}, {"a", 5, 0, false},
		}},
		{"forgotten after the window by record time", time.Minute, 10, []step{
			{"a", 0, 0, false}, {"b", 1, 59 * time.Second, false}, {"a", 2, 59 * time.Second, true},
			{"c", 3, 61 * time.Second, false}, {"a", 4, 61 * time.Second, false},
		}},
		{"the oldest forgotten beyond the cap", time.Hour, 2, []step{
			{"a", 0, 0, false}, {"b", 1, 0, false}, {"c", 2, 0, false},
			{"b", 3, 0, true}, {"a", 4, 0, false},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSeenSet(tc.window, tc.maxIDs)
			for i, st := range tc.steps {
				if got, _ := s.seen(st.id, st.offset, t0.Add(st.at)); got != st.want {
					t.Errorf("step %d (%s at %d): repeat = %v, want %v", i, st.id, st.offset, got, st.want)
				}
			}
			if got := s.len(); got > tc.maxIDs {
				t.Errorf("remembers %d IDs, want at most %d", got, tc.maxIDs)
			}
		})
	}
}

// terminals returns res's terminal results, in order.
func terminals(res []*pb.Result) []*pb.Result {
	var out []*pb.Result
	for _, r := range res {
		if r.GetChunk() == nil {
			out = append(out, r)
		}
	}
	return out
}

// terminalIDs returns the request IDs of res's terminal results, in order.
func terminalIDs(res []*pb.Result) []string {
	var ids []string
	for _, r := range terminals(res) {
		ids = append(ids, r.GetRequestId())
	}
	return ids
}

// sameAnswer reports whether again repeats orig: one processing (run_id)
// and its content.
func sameAnswer(t *testing.T, orig, again *pb.Result) {
	t.Helper()
	if again.GetRunId() != orig.GetRunId() || again.GetFinal().GetContent() != orig.GetFinal().GetContent() || again.GetFinal() == nil {
		t.Errorf("the repeat's answer: run %s %q, want the first's: run %s %q", again.GetRunId(), again.GetFinal().GetContent(),
			orig.GetRunId(), orig.GetFinal().GetContent())
	}
}

// TestRepeatedRequestIDCallsModelOnce: a request ID produced twice (two
// records, as a repeated Idempotency-Key through two ingress instances
// produces) calls the model once; the repeat is answered with a copy of
// the first answer (for a caller waiting on it) and counted.
func TestRepeatedRequestIDCallsModelOnce(t *testing.T) {
	h := newHarness(t)
	h.run(h.modelsim(time.Millisecond), nil)
	h.produce(request("idem", 0, true), request("idem", 0, true), request("idem", 1, false))
	res, _ := h.collect(3)
	if got, want := terminalIDs(res), []string{"idem-0", "idem-0", "idem-1"}; !slices.Equal(got, want) {
		t.Fatalf("terminal results of %v, want %v", got, want)
	}
	sameAnswer(t, terminals(res)[0], terminals(res)[1])
	if got := h.hits.Load(); got != 2 {
		t.Errorf("backend called %d times, want 2 (the repeat not at all)", got)
	}
	if got := testutil.ToFloat64(h.router.metrics.duplicates.WithLabelValues(laneOf(interactive))); got != 1 {
		t.Errorf("duplicates skipped = %v, want 1", got)
	}
}

// TestRepeatAfterRestartCallsModelOnce: the repeat reaches a worker that
// did not handle the original (a restart between the two); its seen set,
// rebuilt from the partition, still skips it.
func TestRepeatAfterRestartCallsModelOnce(t *testing.T) {
	h := newHarness(t)
	stop := h.run(h.modelsim(time.Millisecond), nil)
	h.produce(request("idem", 0, false))
	first, _ := h.collect(1)
	if !slices.Equal(terminalIDs(first), []string{"idem-0"}) {
		t.Fatalf("terminal results of %v, want idem-0", terminalIDs(first))
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	h.produce(request("idem", 0, false), request("idem", 1, false))
	h.run(h.modelsim(time.Millisecond), nil)
	res, _ := h.collect(2)
	if got, want := terminalIDs(res), []string{"idem-0", "idem-1"}; !slices.Equal(got, want) {
		t.Fatalf("after the restart: terminal results of %v, want %v", got, want)
	}
	sameAnswer(t, terminals(first)[0], terminals(res)[0])
	if got := h.hits.Load(); got != 2 {
		t.Errorf("backend called %d times, want 2 (the repeat not at all)", got)
	}
	if got := testutil.ToFloat64(h.router.metrics.duplicates.WithLabelValues(laneOf(interactive))); got != 1 {
		t.Errorf("duplicates skipped after the restart = %v, want 1", got)
	}
}

// TestRedeliveredRecordRunsAgain: a record whose offset was not committed
// (a crash after its answer, before the commit) is delivered again with
// the same request ID at the same offset. That is not a repeat: it is
// handled again, although the rebuilt seen set holds its ID.
func TestRedeliveredRecordRunsAgain(t *testing.T) {
	h := newHarness(t)
	stop := h.run(h.modelsim(time.Millisecond), nil)
	h.produce(request("again", 0, false))
	h.collect(1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	// As if the worker had crashed before committing: back to offset 0.
	adm := kadm.NewClient(h.client)
	committed, err := adm.FetchOffsets(t.Context(), "switchboard-router")
	if err != nil {
		t.Fatal(err)
	}
	rewind := kadm.Offsets{}
	committed.Each(func(o kadm.OffsetResponse) {
		rewind.AddOffset(o.Topic, o.Partition, 0, -1)
	})
	if err := adm.CommitAllOffsets(t.Context(), "switchboard-router", rewind); err != nil {
		t.Fatal(err)
	}
	h.run(h.modelsim(time.Millisecond), nil)
	res, _ := h.collect(1)
	if got, want := terminalIDs(res), []string{"again-0"}; !slices.Equal(got, want) {
		t.Fatalf("after the redelivery: terminal results of %v, want %v", got, want)
	}
	if got := h.hits.Load(); got != 2 {
		t.Errorf("backend called %d times, want 2 (the redelivered record runs again)", got)
	}
	if got := h.router.remembered("again-0"); got != 1 {
		t.Errorf("the request ID is remembered by %d partitions, want 1", got)
	}
	if got := testutil.ToFloat64(h.router.metrics.duplicates.WithLabelValues(laneOf(interactive))); got != 0 {
		t.Errorf("duplicates skipped = %v, want 0", got)
	}
}

// remembered counts the partitions whose seen set holds id.
func (r *Router) remembered(id string) int {
	r.seenMu.Lock()
	defer r.seenMu.Unlock()
	n := 0
	for _, s := range r.seen {
		s.mu.Lock()
		if _, ok := s.ids[id]; ok {
			n++
		}
		s.mu.Unlock()
	}
	return n
}

// TestRepeatWithoutItsAnswerIsProcessed: a repeat whose first answer is
// not in the results topic any more (retention, or a transaction not yet
// committed) is processed like any request, never left unanswered.
func TestRepeatWithoutItsAnswerIsProcessed(t *testing.T) {
	h := newHarness(t)
	stop := h.run(h.modelsim(time.Millisecond), nil)
	h.produce(request("gone", 0, false))
	h.collect(1)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	adm := kadm.NewClient(h.client)
	ends, err := adm.ListEndOffsets(t.Context(), results)
	if err != nil {
		t.Fatal(err)
	}
	drop := kadm.Offsets{}
	ends.Each(func(o kadm.ListedOffset) { drop.AddOffset(o.Topic, o.Partition, o.Offset, -1) })
	if _, err := adm.DeleteRecords(t.Context(), drop); err != nil {
		t.Fatal(err)
	}
	h.produce(request("gone", 0, false), request("gone", 1, false))
	h.run(h.modelsim(time.Millisecond), nil)
	res, _ := h.collect(2)
	if got, want := terminalIDs(res), []string{"gone-0", "gone-1"}; !slices.Equal(got, want) {
		t.Fatalf("terminal results of %v, want %v", got, want)
	}
	if got := h.hits.Load(); got != 3 {
		t.Errorf("backend called %d times, want 3 (the repeat without its answer too)", got)
	}
}
