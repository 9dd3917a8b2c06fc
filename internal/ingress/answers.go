package ingress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/txnview"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// answers reads the results topic back for the OpenAI-compatible API,
// whose clients wait for their answer on the call that sent the request.
// Any ingress instance can answer any request: the answer comes from
// Kafka, not from the instance that produced the request, and nothing
// outside Kafka is needed.
//
// One reader per process, started by the first OpenAI request (an ingress
// whose clients never use the API reads nothing), reads every partition of
// the results topic without a consumer group, from the end offsets it
// lists when it starts (the last stable offset where a transaction is
// open; later partitions from their start). A result written in a
// transaction (router-worker --exactly-once) is dispatched at its commit
// marker and never if the transaction aborts (package txnview). Waiting
// requests register their request ID before their record is produced, and
// the reader starts before any registers, so no answer can be written
// before the reader's position. For each record the reader compares its
// request-id header with the waiting requests and decodes only the
// records someone waits for; the others are dropped at once. Memory is
// bounded by franz-go's fetch buffer (FetchMaxBytes), the waiters
// (maxWaiting) and each waiter's chunk mailbox (chunkMailbox results):
// a waiter whose mailbox is full loses chunks, never its terminal result,
// which holds the whole answer.
//
// A request answered from an earlier request's ack (an Idempotency-Key
// repeat on the same instance) also searches the conversation's results
// partition from shortly before that request was accepted (lookup),
// because its answer may already have gone by.
type answers struct {
	opts       []kgo.Opt
	topic      string
	maxWaiting int
	log        *slog.Logger
	metrics    *metrics

	startOnce sync.Once
	start     chan struct{} // closed by the first use
	ready     chan struct{} // closed once the reader is positioned
	adm       *kadm.Client  // set before ready is closed

	partitions atomic.Int32 // partitions of the results topic being read

	mu      sync.Mutex
	waiting map[string][]*waiter // request ID -> waiters; slices are replaced, never changed
	n       int
}

// chunkMailbox bounds the chunks a waiter holds unread.
const chunkMailbox = 256

// waiter is one request waiting for its answer. The reader (and a lookup)
// deliver to it and never block: chunks go to a bounded mailbox (dropped
// when full: the terminal result repairs the text), the terminal result to
// final, once.
type waiter struct {
	requestID, tenant string
	chunks            chan *pb.Result // nil: only the terminal result is wanted
	dropped           atomic.Bool     // a chunk did not fit
	once              sync.Once
	done              chan struct{} // closed when final is set
	final             *pb.Result
}

func newAnswers(opts []kgo.Opt, topic string, maxWaiting int, log *slog.Logger, m *metrics) *answers {
	return &answers{opts: opts, topic: topic, maxWaiting: maxWaiting, log: log, metrics: m,
		start: make(chan struct{}), ready: make(chan struct{}), waiting: map[string][]*waiter{}}
}

// deliver hands res to w if it is w's (its tenant's).
func (w *waiter) deliver(res *pb.Result) {
	if res.GetTenant() != w.tenant {
		return
	}
	if _, ok := res.GetBody().(*pb.Result_Chunk); ok {
		if w.chunks == nil {
			return
		}
		select {
		case w.chunks <- res:
		default:
			w.dropped.Store(true)
		}
		return
	}
	w.once.Do(func() {
		w.final = res
		close(w.done)
	})
}

// wait starts the reader if it is not running and waits until it is
// positioned, at most until ctx ends.
func (a *answers) wait(ctx context.Context) *failure {
	a.startOnce.Do(func() { close(a.start) })
	select {
	case <-a.ready:
		return nil
	case <-ctx.Done():
		return &failure{status: http.StatusServiceUnavailable, code: "unavailable", retryAfter: time.Second,
			message: "ingress is not reading the results topic yet; nothing was sent"}
	}
}

// register adds a waiter for requestID's results of tenant; chunks: it
// wants the chunks too. The caller unregisters it.
func (a *answers) register(requestID, tenant string, chunks bool) (*waiter, *failure) {
	w := &waiter{requestID: requestID, tenant: tenant, done: make(chan struct{})}
	if chunks {
		w.chunks = make(chan *pb.Result, chunkMailbox)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.n >= a.maxWaiting {
		return nil, &failure{status: http.StatusServiceUnavailable, code: "overloaded", retryAfter: time.Second,
			message: fmt.Sprintf("ingress already holds its limit of %d requests waiting for their answers", a.maxWaiting)}
	}
	a.waiting[requestID] = append(slices.Clip(a.waiting[requestID]), w)
	a.n++
	a.metrics.openaiWaiting.Set(float64(a.n))
	return w, nil
}

func (a *answers) unregister(w *waiter) {
	a.mu.Lock()
	defer a.mu.Unlock()
	ws := a.waiting[w.requestID]
	i := slices.Index(ws, w)
	if i < 0 {
		return
	}
	if len(ws) == 1 {
		delete(a.waiting, w.requestID)
	} else {
		a.waiting[w.requestID] = slices.Delete(slices.Clone(ws), i, i+1)
	}
	a.n--
	a.metrics.openaiWaiting.Set(float64(a.n))
}

func (a *answers) waitersOf(requestID string) []*waiter {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.waiting[requestID]
}

func (a *answers) anyWaiting() bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.n > 0
}

// dispatch hands rec to the requests waiting for it, decoding it only if
// some wait.
func (a *answers) dispatch(rec *kgo.Record) {
	id := envelope.Header(rec, envelope.HeaderRequestID)
	if id == "" && !a.anyWaiting() {
		return
	}
	var ws []*waiter
	if id != "" {
		if ws = a.waitersOf(id); len(ws) == 0 {
			return
		}
	}
	res, err := envelope.DecodeResult(rec)
	if err != nil {
		return
	}
	if id == "" {
		ws = a.waitersOf(res.GetRequestId())
	}
	for _, w := range ws {
		w.deliver(res)
	}
}

// run is the reader: it waits for the first use, positions itself at the
// end of every partition, closes ready, and dispatches every record it
// fetches until ctx ends. A second goroutine, which run waits for, adds
// partitions the topic gains later.
func (a *answers) run(ctx context.Context) {
	select {
	case <-ctx.Done():
		return
	case <-a.start:
	}
	// Control records: the markers that let results of router-worker's
	// transactions through (txnview).
	cl, err := kgo.NewClient(append(slices.Clip(a.opts), kgo.FetchMaxBytes(16<<20), kgo.KeepControlRecords())...)
	if err != nil {
		a.log.Error("openai: results reader", "err", err)
		return
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	known, err := a.position(ctx, cl, adm)
	if err != nil {
		return // ctx ended
	}
	a.adm = adm
	close(a.ready)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { a.watchPartitions(ctx, cl, adm, known) })
	// A result written in a transaction (router-worker --exactly-once)
	// is dispatched at its commit, never if it aborts: per partition.
	views := map[int32]*txnview.Filter{}
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil || fetches.IsClientClosed() {
			return
		}
		fetches.EachError(func(topic string, p int32, err error) {
			a.log.Warn("openai: fetch error", "topic", topic, "partition", p, "err", err)
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			view := views[rec.Partition]
			if view == nil {
				view = &txnview.Filter{}
				views[rec.Partition] = view
			}
			view.Add(rec, a.dispatch)
		})
	}
}

// position starts cl at the end of every partition of the results topic,
// or at its last stable offset while a transaction is open there (the
// reader must see a transaction's results to dispatch them at its commit),
// retrying until the cluster answers or ctx ends, and returns the
// partitions.
func (a *answers) position(ctx context.Context, cl *kgo.Client, adm *kadm.Client) (map[int32]bool, error) {
	for attempt := 0; ; attempt++ {
		ends, err := adm.ListCommittedOffsets(ctx, a.topic)
		if err == nil {
			err = ends.Error()
		}
		if err == nil && len(ends[a.topic]) == 0 {
			err = fmt.Errorf("topic %s has no partitions (is it provisioned?)", a.topic)
		}
		if err == nil {
			offsets := map[int32]kgo.Offset{}
			known := map[int32]bool{}
			ends.Each(func(o kadm.ListedOffset) {
				offsets[o.Partition] = kgo.NewOffset().At(o.Offset)
				known[o.Partition] = true
			})
			cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{a.topic: offsets})
			a.partitions.Store(int32(len(known)))
			a.log.Info("openai: reading results", "topic", a.topic, "partitions", len(known))
			return known, nil
		}
		if attempt%10 == 0 {
			a.log.Warn("openai: waiting for the results topic", "topic", a.topic, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// partitionCheck is how often the reader looks for new partitions.
const partitionCheck = 30 * time.Second

// watchPartitions adds partitions the results topic gains, from their
// start (everything in them is newer than the reader's start), until ctx
// ends.
func (a *answers) watchPartitions(ctx context.Context, cl *kgo.Client, adm *kadm.Client, known map[int32]bool) {
	t := time.NewTicker(partitionCheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ends, err := adm.ListEndOffsets(ctx, a.topic)
		if err != nil || ends.Error() != nil {
			continue
		}
		added := map[int32]kgo.Offset{}
		ends.Each(func(o kadm.ListedOffset) {
			if !known[o.Partition] {
				known[o.Partition] = true
				added[o.Partition] = kgo.NewOffset().AtStart()
			}
		})
		if len(added) > 0 {
			cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{a.topic: added})
			a.partitions.Store(int32(len(known)))
			a.log.Info("openai: results topic grew", "topic", a.topic, "partitions", len(known))
		}
	}
}

// lookupMargin is how long before a request's acceptance a lookup starts
// reading, for clocks that disagree between hosts.
const lookupMargin = time.Minute

// lookup searches the results partition of conv for w's terminal result,
// from lookupMargin before since up to the partition's end when the
// lookup starts (w is registered already, so the live reader has
// everything after), and delivers it. It ends when it found it, reached
// that end, or ctx ended; failures only mean the live reader is the only
// hope, and are logged at debug level.
func (a *answers) lookup(ctx context.Context, w *waiter, conv string, since time.Time) {
	if err := a.search(ctx, w, conv, since); err != nil && ctx.Err() == nil {
		a.log.Debug("openai: looking up an earlier answer", "request_id", w.requestID, "err", err)
	}
}

func (a *answers) search(ctx context.Context, w *waiter, conv string, since time.Time) error {
	n := int(a.partitions.Load())
	if n == 0 || a.adm == nil {
		return errors.New("the reader is not positioned")
	}
	p := envelope.Partition(conv, n)
	ends, err := a.adm.ListEndOffsets(ctx, a.topic)
	if err != nil {
		return err
	}
	end, ok := ends.Lookup(a.topic, p)
	if !ok || end.Err != nil {
		return fmt.Errorf("end offset of partition %d: not listed", p)
	}
	starts, err := a.adm.ListOffsetsAfterMilli(ctx, since.Add(-lookupMargin).UnixMilli(), a.topic)
	if err != nil {
		return err
	}
	from, ok := starts.Lookup(a.topic, p)
	if !ok || from.Err != nil || from.Offset < 0 || from.Offset >= end.Offset {
		return nil // nothing written since
	}
	cl, err := kgo.NewClient(append(slices.Clip(a.opts), kgo.KeepControlRecords(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{a.topic: {p: kgo.NewOffset().At(from.Offset)}}))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	// Committed results only (txnview); one whose transaction is still
	// open at the end is the live reader's to deliver at its commit.
	var view txnview.Filter
	for {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return err
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) { ferr = err })
		if ferr != nil {
			return ferr
		}
		last := false
		fetches.EachRecord(func(at *kgo.Record) {
			if at.Offset >= end.Offset-1 {
				last = true
			}
			if at.Offset >= end.Offset {
				return
			}
			view.Add(at, func(rec *kgo.Record) { a.found(w, conv, rec) })
		})
		select {
		case <-w.done:
			return nil
		default:
		}
		if last {
			return nil
		}
	}
}

// found delivers rec to w if it is w's terminal result.
func (a *answers) found(w *waiter, conv string, rec *kgo.Record) {
	if string(rec.Key) != conv {
		return
	}
	if id := envelope.Header(rec, envelope.HeaderRequestID); id != "" && id != w.requestID {
		return
	}
	if res, err := envelope.DecodeResult(rec); err == nil && res.GetRequestId() == w.requestID {
		if _, chunk := res.GetBody().(*pb.Result_Chunk); !chunk {
			w.deliver(res)
		}
	}
}
