package egress

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// mirror copies the results of src's topic with offsets in [from, to) to
// dst as MirrorMaker 2 does: same partition, key, headers, value and
// timestamp, at dst's own offsets. skip drops some records (those not
// mirrored yet when the source cluster died).
func mirror(t *testing.T, src, dst *harness, from, to int64, skip func(*kgo.Record) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	r, err := kgo.NewClient(kgo.SeedBrokers(src.cluster.ListenAddrs()...), kgo.ConsumeTopics(resultsTopic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	w, err := kgo.NewClient(kgo.SeedBrokers(dst.cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	n := 0
	for n < int(to-from) {
		fs := r.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("mirrored %d of %d records: %v", n, to-from, ctx.Err())
		}
		fs.EachRecord(func(rec *kgo.Record) {
			if rec.Offset < from || rec.Offset >= to {
				return
			}
			n++
			if skip != nil && skip(rec) {
				return
			}
			c := &kgo.Record{Topic: rec.Topic, Partition: rec.Partition, Key: rec.Key, Value: rec.Value, Headers: rec.Headers, Timestamp: rec.Timestamp}
			if err := w.ProduceSync(ctx, c).FirstErr(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// produceAt writes results with the given record timestamps, in order.
func (h *harness) produceAt(at time.Time, results ...*pb.Result) []cursor {
	h.t.Helper()
	var out []cursor
	for i, res := range results {
		rec, err := envelope.EncodeResult(resultsTopic, res)
		if err != nil {
			h.t.Fatal(err)
		}
		rec.Timestamp = at.Add(time.Duration(i) * time.Millisecond)
		r, err := h.client.ProduceSync(h.t.Context(), rec).First()
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, cursor{partition: r.Partition, offset: r.Offset, at: r.Timestamp.UnixMilli(), ident: eventIdent(res)})
	}
	return out
}

// TestResumeInAnotherCluster: a cursor made by an egress on one cluster
// resumes on an egress of another cluster that holds a mirror of the
// results topic at other offsets: the client gets exactly the events after
// its own, whether its last event was mirrored or not.
func TestResumeInAnotherCluster(t *testing.T) {
	east := newHarness(t, kfake.ClusterID("east"))
	const conv = "travelling"
	at := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	answers := []*pb.Result{
		res(conv, "", "r1", "run", 1, 0, false), res(conv, "", "r1", "run", 1, 1, false), res(conv, "", "r1", "run", 1, 0, true),
		res(conv, "", "r2", "run", 1, 0, false), res(conv, "", "r2", "run", 1, 1, false), res(conv, "", "r2", "run", 1, 0, true),
	}
	cursors := east.produceAt(at, answers...)
	p := cursors[0].partition
	egEast := east.start(nil)
	// The client had r1 up to its final result (index 2).
	last := egEast.token("", conv, cursors[2])
	want := []string{"chunk:r2/run/1/0", "chunk:r2/run/1/1", "result:done r2", "end:done"}

	for _, tc := range []struct {
		name      string
		skip      func(*kgo.Record) bool
		filler    int
		want      []string
		unmatched float64
	}{
		{name: "its event mirrored", filler: 5, want: want},
		{name: "its event lost", filler: 3, want: want, unmatched: 1,
			// r1's final result never crossed.
			skip: func(rec *kgo.Record) bool { return rec.Offset == cursors[2].offset }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			west := newHarness(t, kfake.ClusterID("west-"+tc.name))
			// The standby's own earlier records shift the offsets.
			var fill []*pb.Result
			for i := range tc.filler {
				fill = append(fill, res(conv+"-other", "", "x", "run", 1, int32(i), false))
			}
			west.produceAt(at.Add(-time.Hour), fill...)
			mirror(t, east, west, cursors[0].offset, cursors[len(cursors)-1].offset+1, tc.skip)
			egWest := west.start(nil)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			h := http.Header{"Last-Event-ID": {last}}
			evs, status := readSSE(ctx, t, egWest.url+"/v1/conversations/"+conv+"/events?request_id=r2", h, 0)
			if status != http.StatusOK || !slices.Equal(labels(evs), tc.want) {
				t.Fatalf("resumed on the other cluster: status %d, events %v, want %v", status, labels(evs), tc.want)
			}
			if n := egWest.metric(t, "switchboard_egress_foreign_resumes_total"); n != 1 {
				t.Errorf("foreign resumes = %v, want 1", n)
			}
			if n := egWest.metric(t, "switchboard_egress_foreign_resumes_unmatched_total"); n != tc.unmatched {
				t.Errorf("unmatched foreign resumes = %v, want %v", n, tc.unmatched)
			}
			// The new cursors are the standby's: they resume there by offset.
			c, err := egWest.e.cursors.open("", conv, evs[0].cursor)
			if err != nil || egWest.e.foreign(c) || c.partition != p {
				t.Errorf("cursor of the resumed stream: %v (foreign %v), %v", c, egWest.e.foreign(c), err)
			}
		})
	}
	// On its own cluster the same cursor resumes by offset.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	evs, _ := readSSE(ctx, t, egEast.url+"/v1/conversations/"+conv+"/events?request_id=r2", http.Header{"Last-Event-ID": {last}}, 0)
	if !slices.Equal(labels(evs), want) {
		t.Errorf("resumed on its own cluster: %v, want %v", labels(evs), want)
	}
}
