package router

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// worker owns one assigned partition: it handles the partition's records in
// log order, one at a time, and marks each for commit once its results are
// in Kafka. The poll loop feeds it through enqueue; the rebalance callbacks
// stop it by closing quit and wait on done.
type worker struct {
	r      *Router
	tp     topicPartition
	ctx    context.Context // cancelled to abandon the current request
	cancel context.CancelFunc
	quit   chan struct{} // closed: stop after the current request
	done   chan struct{} // closed when run returns
	wake   chan struct{} // one-slot doorbell for enqueue

	mu     sync.Mutex // guards queue and paused
	queue  []*kgo.Record
	paused bool
}

func newWorker(r *Router, tp topicPartition) *worker {
	ctx, cancel := context.WithCancel(r.base)
	return &worker{
		r: r, tp: tp, ctx: ctx, cancel: cancel,
		quit: make(chan struct{}), done: make(chan struct{}), wake: make(chan struct{}, 1),
	}
}

// enqueue appends fetched records and pauses fetching the partition when
// too many wait, which bounds the records held in memory.
func (w *worker) enqueue(recs []*kgo.Record) {
	w.mu.Lock()
	w.queue = append(w.queue, recs...)
	if !w.paused && len(w.queue) >= w.r.cfg.QueueHighMark {
		w.paused = true
		w.r.client.PauseFetchPartitions(map[string][]int32{w.tp.topic: {w.tp.partition}})
		w.r.metrics.paused.Inc()
	}
	w.r.metrics.queued.Add(float64(len(recs)))
	w.mu.Unlock()
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// next pops the oldest record, resuming fetching when the queue has drained
// below half the high mark. It returns nil when the worker must stop.
func (w *worker) next() *kgo.Record {
	for {
		select {
		case <-w.quit:
			return nil
		default:
		}
		w.mu.Lock()
		if len(w.queue) > 0 {
			rec := w.queue[0]
			w.queue[0] = nil
			w.queue = w.queue[1:]
			if w.paused && len(w.queue) < w.r.cfg.QueueHighMark/2 {
				w.paused = false
				w.r.client.ResumeFetchPartitions(map[string][]int32{w.tp.topic: {w.tp.partition}})
				w.r.metrics.paused.Dec()
			}
			w.r.metrics.queued.Dec()
			w.mu.Unlock()
			return rec
		}
		w.mu.Unlock()
		select {
		case <-w.quit:
			return nil
		case <-w.wake:
		}
	}
}

func (w *worker) run() {
	defer close(w.done)
	defer w.cancel()
	defer w.release()
	for {
		rec := w.next()
		if rec == nil {
			return
		}
		backoff := w.r.cfg.RetryBackoff
		for {
			err := w.r.process(w.ctx, rec)
			if err == nil {
				break
			}
			if w.ctx.Err() != nil {
				return // abandoned: not marked, the next owner redoes it
			}
			w.r.log.Warn("writing results failed; retrying the record", "topic", rec.Topic,
				"partition", rec.Partition, "offset", rec.Offset, "err", err)
			select {
			case <-w.ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 10*time.Second)
		}
		w.r.client.MarkCommitRecords(rec)
	}
}

// release undoes what this worker holds on the client and in the metrics:
// a partition it paused must not stay paused if it is assigned again.
func (w *worker) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.paused {
		w.r.client.ResumeFetchPartitions(map[string][]int32{w.tp.topic: {w.tp.partition}})
		w.r.metrics.paused.Dec()
	}
	w.r.metrics.queued.Sub(float64(len(w.queue)))
	w.queue = nil
}
