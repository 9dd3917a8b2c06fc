package loadtest

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// storedWatch reads the requests topics from their ends at start and
// reports every stored request of the load test (by its MetadataKey), in
// log order per partition: the order Switchboard will answer them in.
type storedWatch struct {
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
}

func startStoredWatch(ctx context.Context, opts []kgo.Opt, topics []string, observe func(id string)) (*storedWatch, error) {
	if opts == nil {
		return nil, fmt.Errorf("loadtest: checking the stored order needs Kafka access")
	}
	start := map[string]map[int32]kgo.Offset{}
	for _, t := range topics {
		offs, err := endOffsets(ctx, opts, t)
		if err != nil {
			return nil, err
		}
		start[t] = offs
	}
	cl, err := kgo.NewClient(append(opts, kgo.ConsumePartitions(start), kgo.FetchMaxWait(100*time.Millisecond))...)
	if err != nil {
		return nil, fmt.Errorf("stored-order reader: %w", err)
	}
	w := &storedWatch{cl: cl, done: make(chan struct{})}
	ctx, w.cancel = context.WithCancel(ctx)
	go func() {
		defer close(w.done)
		for {
			fetches := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fetches.EachRecord(func(rec *kgo.Record) {
				req, err := envelope.DecodeRequest(rec)
				if err != nil {
					return
				}
				if id := req.GetMetadata()[MetadataKey]; id != "" {
					observe(id)
				}
			})
		}
	}()
	return w, nil
}

func (w *storedWatch) close() {
	w.cancel()
	<-w.done
	w.cl.Close()
}

// storedChecks hold every class to the order it sent in, as stored in the
// requests topics: every accepted request seen there, none ahead of a
// request of its conversation sent before it.
func storedChecks(rep *Report) []Check {
	var out []Check
	for _, n := range rep.classNames() {
		c := rep.Classes[n]
		out = append(out,
			Check{Name: n + ": stored in the order sent", Pass: c.StoredOrderViolations == 0,
				Detail: fmt.Sprintf("%d of %d stored requests ahead of one sent before them", c.StoredOrderViolations, c.Stored)},
			Check{Name: n + ": every accepted request stored", Pass: c.Stored >= c.Accepted,
				Detail: fmt.Sprintf("%d of %d accepted requests seen in the requests topic", c.Stored, c.Accepted)})
	}
	return out
}
