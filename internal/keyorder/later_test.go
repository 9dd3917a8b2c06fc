package keyorder

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// TestLaterGivesThePlaceBack: with one place in flight, a record whose
// Handler answers Later gives the place back, so another key's records all
// finish while it waits; its key starts nothing else meanwhile; its offset
// is not committed until it finishes; and once its Handler succeeds its
// key goes on in order.
func TestLaterGivesThePlaceBack(t *testing.T) {
	c := newCluster(t, 1, "t")
	var mu sync.Mutex
	open := false      // the waiting key may proceed
	var order []string // values finished, in order
	var laters int     // Later answers
	var slowStartedTwice bool
	cfg := Config{Group: "g", Topics: []string{"t"}, MaxInFlight: 1, CommitInterval: 50 * time.Millisecond,
		Handler: func(_ context.Context, rec *kgo.Record) error {
			mu.Lock()
			defer mu.Unlock()
			v := string(rec.Value)
			if string(rec.Key) == "slow" && !open {
				if v != "slow-0" {
					slowStartedTwice = true // a later record of the key started while the first waits
				}
				laters++
				return Later(5 * time.Millisecond)
			}
			order = append(order, v)
			return nil
		}}
	startEngine(t, c, cfg)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	var recs []*kgo.Record
	for i := range 2 {
		recs = append(recs, &kgo.Record{Topic: "t", Key: []byte("slow"), Value: fmt.Appendf(nil, "slow-%d", i)})
	}
	for i := range 20 {
		recs = append(recs, &kgo.Record{Topic: "t", Key: []byte("fast"), Value: fmt.Appendf(nil, "fast-%d", i)})
	}
	if err := cl.ProduceSync(t.Context(), recs...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				mu.Lock()
				defer mu.Unlock()
				t.Fatalf("%s: not within 30s (finished %v, %d Later answers)", what, order, laters)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the other key's records finish while the first key waits", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 20 && laters > 1
	})
	// The first record waits at offset 0: nothing is committed past it.
	adm := kadm.NewClient(cl)
	time.Sleep(200 * time.Millisecond) // several commit intervals
	offs, err := adm.FetchOffsets(t.Context(), "g")
	if err != nil {
		t.Fatal(err)
	}
	if o, ok := offs.Lookup("t", 0); ok && o.At > 0 {
		t.Errorf("committed offset %d while offset 0 waits, want 0 or none", o.At)
	}
	mu.Lock()
	open = true
	mu.Unlock()
	waitFor("the waiting key goes on", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(order) == 22
	})
	mu.Lock()
	defer mu.Unlock()
	if got := fmt.Sprint(order[20:]); got != "[slow-0 slow-1]" {
		t.Errorf("the waiting key finished %s, want [slow-0 slow-1]", got)
	}
	if slowStartedTwice {
		t.Error("a later record of the waiting key started before its first finished")
	}
}
