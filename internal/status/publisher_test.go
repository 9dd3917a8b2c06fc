package status

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestPublisherWritesAndTombstones: a publisher writes decodable records
// under its key at its interval, and a tombstone when it stops.
func TestPublisherWritesAndTombstones(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "status"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	p := &Publisher{Opts: opts, Topic: "status", Service: ServiceIngress, Instance: "i-1", Interval: 20 * time.Millisecond,
		Fill: func(r *Record) { r.Ingress = &Ingress{Admission: true, Lanes: []Lane{{Lane: "batch", Lag: 5}}} }}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics("status"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	pctx, pcancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer pcancel()
	records, tombstone := 0, false
	for !tombstone && pctx.Err() == nil {
		cl.PollFetches(pctx).EachRecord(func(rec *kgo.Record) {
			if string(rec.Key) != "ingress/i-1" {
				t.Errorf("key %q, want ingress/i-1", rec.Key)
			}
			r, err := Decode(rec.Key, rec.Value)
			switch {
			case errors.Is(err, ErrTombstone):
				tombstone = true
			case err != nil:
				t.Errorf("record %d: %v", rec.Offset, err)
			default:
				if r.Ingress.Lanes[0].Lag != 5 || r.IntervalMS != 20 {
					t.Errorf("got %+v, want the filled section", r)
				}
				records++
				if records == 3 {
					cancel() // stop: the tombstone follows
				}
			}
		})
	}
	if records < 3 || !tombstone {
		t.Fatalf("got %d records and tombstone %v; want 3 records, then a tombstone", records, tombstone)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
