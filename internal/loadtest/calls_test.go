package loadtest

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// kafkaCaller produces a call's messages straight to Kafka, in the order
// given or, to show that the checks catch it, reversed.
type kafkaCaller struct {
	*kafkaDriver
	reverse bool
}

func (k *kafkaCaller) SendCall(ctx context.Context, ms []Message) []error {
	errs := make([]error, len(ms))
	idx := make([]int, len(ms))
	for i := range idx {
		idx[i] = i
	}
	if k.reverse {
		slices.Reverse(idx)
	}
	for _, i := range idx {
		errs[i] = k.Send(ctx, ms[i])
	}
	return errs
}

func TestCallsOrderCheckedWhereStored(t *testing.T) {
	for _, tc := range []struct {
		name    string
		reverse bool
	}{{"in order", false}, {"reversed", true}} {
		t.Run(tc.name, func(t *testing.T) {
			c := workerCluster(t, time.Millisecond, 0, 0)
			opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
			kd, err := newKafkaDriver(opts, testTopics, "")
			if err != nil {
				t.Fatal(err)
			}
			defer kd.Close()
			rep := kafkaRun(t, c, Config{Scenario: "calls", Duration: time.Second, Drain: 10 * time.Second,
				KafkaOpts: opts, Topics: testTopics, CheckStoredOrder: true,
				Callers: map[string]CallSender{"k": &kafkaCaller{kafkaDriver: kd, reverse: tc.reverse}},
				Loads:   []Load{{Class: "calls", Rate: 80, Conversations: 4, PerCall: 8, ConvsPerCall: 2, Via: "k"}}})
			cl := rep.Classes["calls"]
			if cl == nil || cl.Accepted != 80 || cl.Stored != 80 {
				t.Fatalf("report %+v: want 80 accepted and stored", cl)
			}
			stored := check(rep, "calls: stored in the order sent")
			if tc.reverse {
				// Each call holds four messages of each of its two conversations,
				// reversed: three of every four are stored ahead of one sent
				// before them.
				if cl.StoredOrderViolations != 60 || stored == nil || stored.Pass {
					t.Errorf("reversed calls: %d stored out of order (check %+v), want 60 and a failed check", cl.StoredOrderViolations, stored)
				}
				if cl.OrderViolations == 0 {
					t.Error("reversed calls: no order violation at the client")
				}
				return
			}
			if cl.StoredOrderViolations != 0 || cl.OrderViolations != 0 || stored == nil || !stored.Pass {
				t.Errorf("in-order calls: %d stored and %d answered out of order (check %+v)", cl.StoredOrderViolations, cl.OrderViolations, stored)
			}
		})
	}
}

func check(rep *Report, name string) *Check {
	for i := range rep.Checks {
		if rep.Checks[i].Name == name {
			return &rep.Checks[i]
		}
	}
	return nil
}
