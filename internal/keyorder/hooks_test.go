package keyorder

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// TestAssignmentHooks: OnAssigned sees every partition, with its committed
// offset, before the handler sees any of its records; OnReleased sees it
// once it is let go (here at shutdown), and a second run is told where the
// first committed.
func TestAssignmentHooks(t *testing.T) {
	const topic = "hooks"
	c := newCluster(t, 3, topic)
	n := produce(t, c, []string{topic}, 5, 30, rand.New(rand.NewPCG(1, 2)))

	run := func() (assigned map[int32]int64, released map[int32]bool) {
		var mu sync.Mutex
		assigned, released = map[int32]int64{}, map[int32]bool{}
		handled := 0
		done := make(chan struct{})
		stop := startEngine(t, c, Config{Group: "g", Topics: []string{topic}, CommitInterval: 50 * time.Millisecond,
			OnAssigned: func(_ context.Context, parts map[string]map[int32]int64) {
				mu.Lock()
				defer mu.Unlock()
				for p, committed := range parts[topic] {
					assigned[p] = committed
				}
			},
			OnReleased: func(parts map[string][]int32) {
				mu.Lock()
				defer mu.Unlock()
				for _, p := range parts[topic] {
					released[p] = true
				}
			},
			Handler: func(_ context.Context, rec *kgo.Record) error {
				mu.Lock()
				defer mu.Unlock()
				if _, ok := assigned[rec.Partition]; !ok {
					t.Errorf("record of partition %d handled before OnAssigned saw it", rec.Partition)
				}
				if handled++; handled == n {
					close(done)
				}
				return nil
			}})
		if n > 0 {
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("records not handled within 30s")
			}
		}
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			mu.Lock()
			all := len(assigned) == 3
			mu.Unlock()
			if all || time.Now().After(deadline) {
				break
			}
		}
		stop()
		mu.Lock()
		defer mu.Unlock()
		return assigned, released
	}

	assigned, released := run()
	if len(assigned) != 3 || len(released) != 3 {
		t.Fatalf("first run: assigned %v, released %v; want all 3 partitions in each", assigned, released)
	}
	for p, committed := range assigned {
		if committed != -1 {
			t.Errorf("first run: partition %d committed %d, want -1 (none)", p, committed)
		}
	}
	n = 0 // nothing new to handle
	assigned, _ = run()
	total := int64(0)
	for _, committed := range assigned {
		total += max(committed, 0) // -1: a partition that got no records
	}
	if len(assigned) != 3 || total != 30 {
		t.Errorf("second run: committed offsets %v, want all 3 partitions, the committed ones summing to 30", assigned)
	}
}
