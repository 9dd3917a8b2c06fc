package egress

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/txnview"
)

// The replay pool serves the replays the index of recent results cannot
// (a cursor older than the index, or egress without one): after an egress
// restart thousands of clients resume at once, and a Kafka client and a
// scan per stream would open thousands of connections and read the same
// records thousands of times.
//
// Instead a bounded set of readers (ReplayReaders, each one Kafka client)
// reads for every such stream. A partition is read by at most one reader
// at a time, in passes: a pass starts at the lowest offset its streams
// need and serves every stream of the partition whose next offset it has
// not passed yet, each exactly its conversation's records of its range
// [from, to) in offset order; a stream that arrives behind the pass waits
// for the next one. to is the live position the stream subscribed at
// (hub.subscribe), so the live feed goes on from exactly where the replay
// ends: no gap, no duplicate. When a pass ends the reader takes the
// partition that has waited longest (its own again if nothing else waits),
// and after replayIdle without work it closes its client. Partitions that
// find every reader busy wait in order.
//
// Results of router-worker's transactions are held as the live feed holds
// them (hub.publish, package txnview): each pass has a txnview filter, a
// stream gets a transaction's results of its range at the commit marker,
// at the marker's offset (with held, see cursor), and never an aborted
// one's. A transaction whose marker lies at or after a stream's to is the
// live feed's to send, as one whose records begin before the stream's
// from is not the stream's (a resume from a held cursor starts its range
// at the result's own offset: see session.open).
//
// A reader never blocks on one stream: each stream has a queue of
// replayQueue events; a stream whose queue is full leaves the pass (at the
// record it did not get) and is served by a later one. What the readers
// queue is bounded in bytes (ReplayReaderBytes per reader, estimated as for
// the index of recent results): above it a reader waits for its streams to
// take their events.
//
// Lock order: pool.mu, then replayReader.mu. A stream is in exactly one of
// its partition's waiting list (pool.mu), its reader's active set or its
// reader's detached list (both replayReader.mu), or none (done or
// removed).

// replayQueue is how many events a reader queues for one stream.
const replayQueue = 128

// replayBatch is how many records a reader delivers per hold of its lock.
const replayBatch = 256

// replayIdle is how long a reader without work keeps its Kafka client.
const replayIdle = 5 * time.Second

// replayFetchWait is the readers' fetch max wait: how long a fetch at the
// end of a partition waits for records, and so how long the next pass may
// wait for it (see replayReader.unconsume).
const replayFetchWait = 250 * time.Millisecond

// errReplayShutdown ends the replays of a stopping egress.
var errReplayShutdown = errors.New("egress is stopping")

// replayItem is one event queued for a stream, with what it counts against
// its reader's bound.
type replayItem struct {
	ev   *event
	size int64
	r    *replayReader
}

// replayStream is one stream's replay: conv's records of partition in
// [from, to). A pass serving it reads from next on, which lies at or
// before the first record of every transaction the stream may still need
// (a pass it left held them), and sends only events after the last one
// sent (lastOffset, lastHeld: the event's offset and held). err is set
// before ch is closed.
type replayStream struct {
	conv                 string
	partition            int32
	from, next, to       int64
	lastOffset, lastHeld int64
	ch                   chan replayItem
	err                  error
	state                int
}

// replayStream states.
const (
	streamWaiting  = iota // in its partition's waiting list
	streamActive          // in its reader's pass
	streamDetached        // left the pass (queue full); waits for the next
	streamDone            // ch closed, or removed
)

// replayPart is one partition's state in the pool; pool.mu guards it.
type replayPart struct {
	reader  *replayReader   // reading it now; nil: none
	waiting []*replayStream // for the next pass, in arrival order
	queued  bool            // in pool.waitq
}

// replayPool is the set of readers; see the comment at the top of the file.
type replayPool struct {
	topic     string
	opts      []kgo.Opt // of every reader's client
	newClient func(opts ...kgo.Opt) (*kgo.Client, error)
	max       int
	maxBytes  int64
	queue     int // events queued per stream: replayQueue (tests lower it)
	idle      time.Duration
	metrics   *replayMetrics
	log       *slog.Logger
	undecoded prometheus.Counter
	peak      atomic.Int64 // the most bytes one reader had queued, for tests

	ctx    context.Context // ends the readers
	cancel context.CancelFunc
	wg     sync.WaitGroup // the readers' goroutines

	mu      sync.Mutex
	parts   map[int32]*replayPart
	waitq   []int32         // partitions waiting for a reader, oldest first
	idlers  []*replayReader // readers without work, keeping their client
	readers int
	closed  bool
}

type replayMetrics struct {
	readers  prometheus.Gauge
	clients  prometheus.Counter
	streams  *prometheus.GaugeVec // state: waiting, reading
	scanned  prometheus.Counter
	passes   prometheus.Counter
	detached prometheus.Counter
}

func newReplayMetrics(reg prometheus.Registerer) *replayMetrics {
	m := &replayMetrics{
		readers: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "switchboard_egress_replay_readers",
			Help: "Open readers of the replay pool, each one Kafka client (bounded by --replay-readers).",
		}),
		clients: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_replay_clients_total",
			Help: "Kafka clients the replay pool created.",
		}),
		streams: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "switchboard_egress_replay_streams",
			Help: "Streams replaying from Kafka, by state: waiting (for a reader or a pass) or reading.",
		}, []string{"state"}),
		scanned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_replay_records_scanned_total",
			Help: "Records the replay pool read from Kafka, whatever the number of streams served by each.",
		}),
		passes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_replay_passes_total",
			Help: "Passes of the replay pool's readers over a partition.",
		}),
		detached: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_replay_streams_detached_total",
			Help: "Streams that left a replay pass because they read too slowly; a later pass serves them.",
		}),
	}
	reg.MustRegister(m.readers, m.clients, m.streams, m.scanned, m.passes, m.detached)
	m.streams.WithLabelValues("waiting")
	m.streams.WithLabelValues("reading")
	return m
}

// newReplayPool returns a pool of at most readers readers of topic, each
// a client with opts, queuing at most maxBytes for its streams.
func newReplayPool(topic string, opts []kgo.Opt, readers int, maxBytes int64, reg prometheus.Registerer, undecoded prometheus.Counter, log *slog.Logger) *replayPool {
	ctx, cancel := context.WithCancel(context.Background())
	fetch := int32(min(max(maxBytes/2, 1<<20), 64<<20))
	return &replayPool{
		topic: topic,
		opts: append(slices.Clip(opts), kgo.KeepControlRecords(), kgo.FetchMaxWait(replayFetchWait),
			kgo.FetchMaxBytes(fetch), kgo.FetchMaxPartitionBytes(fetch)),
		newClient: kgo.NewClient,
		max:       readers,
		maxBytes:  maxBytes,
		queue:     replayQueue,
		idle:      replayIdle,
		metrics:   newReplayMetrics(reg),
		log:       log,
		undecoded: undecoded,
		ctx:       ctx,
		cancel:    cancel,
		parts:     map[int32]*replayPart{},
	}
}

// close stops the readers (their streams end with errReplayShutdown) and
// waits for them.
func (pl *replayPool) close() {
	pl.mu.Lock()
	pl.closed = true
	pl.mu.Unlock()
	pl.cancel()
	pl.wg.Wait()
	pl.mu.Lock()
	defer pl.mu.Unlock()
	for _, part := range pl.parts {
		for _, s := range part.waiting {
			pl.finish(s, errReplayShutdown)
		}
		part.waiting = nil
	}
}

// replay sends conv's results of partition [from, to) through send, read
// by the pool, then returns; ctx bounds the wait and the reading, and stop
// (egress stopping) ends it with errReplayShutdown.
func (pl *replayPool) replay(ctx context.Context, stop <-chan struct{}, conv string, partition int32, from, to int64, send func(event) error) error {
	s := &replayStream{conv: conv, partition: partition, from: from, next: from, to: to,
		lastOffset: from - 1, lastHeld: math.MaxInt64, ch: make(chan replayItem, pl.queue)}
	pl.add(s) //nolint:contextcheck // a reader it starts serves many streams: the pool owns it (pool.ctx, ended by close), not this stream
	defer pl.remove(s)
	for {
		select {
		case it, ok := <-s.ch:
			if !ok {
				return s.err
			}
			it.r.release(it.size)
			if err := send(*it.ev); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("replay %d..%d: %w", from, to, ctx.Err())
		case <-stop:
			return errReplayShutdown
		}
	}
}

// add registers s: in the pass reading its partition, when that has not
// passed s's start; otherwise it waits for a reader or the next pass.
func (pl *replayPool) add(s *replayStream) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	if pl.closed {
		pl.finish(s, errReplayShutdown)
		return
	}
	part := pl.parts[s.partition]
	if part == nil {
		part = &replayPart{}
		pl.parts[s.partition] = part
	}
	if r := part.reader; r != nil {
		r.mu.Lock()
		joined := r.reading && s.next >= r.pos
		if joined {
			r.activate(s)
		}
		r.mu.Unlock()
		if joined {
			return
		}
	}
	s.state = streamWaiting
	part.waiting = append(part.waiting, s)
	pl.metrics.streams.WithLabelValues("waiting").Inc()
	if part.reader != nil || part.queued {
		return
	}
	switch {
	case len(pl.idlers) > 0:
		r := pl.idlers[len(pl.idlers)-1]
		pl.idlers = pl.idlers[:len(pl.idlers)-1]
		part.reader = r
		r.assign <- s.partition // buffered, and r takes nothing else meanwhile
	case pl.readers < pl.max:
		pl.readers++
		pl.metrics.readers.Inc()
		r := &replayReader{pool: pl, assign: make(chan int32, 1), drained: make(chan struct{}, 1), active: map[string][]*replayStream{}}
		part.reader = r
		pl.wg.Add(1)
		go r.run(s.partition)
	default:
		part.queued = true
		pl.waitq = append(pl.waitq, s.partition)
	}
}

// remove takes s out of the pool, wherever it is, and gives back the bytes
// of the events it did not take.
func (pl *replayPool) remove(s *replayStream) {
	pl.mu.Lock()
	part := pl.parts[s.partition]
	var r *replayReader
	if part != nil && part.reader != nil {
		// s.state is written under either lock: read it under both.
		r = part.reader
		r.mu.Lock()
	}
	switch s.state {
	case streamWaiting:
		if i := slices.Index(part.waiting, s); i >= 0 {
			part.waiting = slices.Delete(part.waiting, i, i+1)
		}
		pl.metrics.streams.WithLabelValues("waiting").Dec()
		s.state = streamDone
	case streamActive, streamDetached:
		r.drop(s)
	}
	if r != nil {
		r.mu.Unlock()
	}
	pl.mu.Unlock()
	// Nothing is sent to s any more.
	for {
		select {
		case it, ok := <-s.ch:
			if !ok {
				return
			}
			it.r.release(it.size)
		default:
			return
		}
	}
}

// finish ends s with err (nil: its range is complete).
func (pl *replayPool) finish(s *replayStream, err error) {
	s.state = streamDone
	s.err = err
	close(s.ch)
}

// next releases part p of r and returns the partition r reads next: the one
// that waited longest, or p again. false: nothing to read, r is idle (and
// may be assigned a partition through r.assign).
func (pl *replayPool) next(r *replayReader, p int32) (int32, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	part := pl.parts[p]
	r.mu.Lock()
	// Streams that joined after the pass saw its last one leave wait for
	// the next pass, as do those that left it.
	for _, ss := range r.active {
		for _, s := range slices.Clone(ss) {
			r.deactivate(s)
			s.state = streamDetached
			r.detached = append(r.detached, s)
			pl.metrics.streams.WithLabelValues("waiting").Inc()
		}
	}
	for _, s := range r.detached {
		s.state = streamWaiting
	}
	part.waiting = append(part.waiting, r.detached...)
	r.detached = nil
	r.reading = false
	r.mu.Unlock()
	part.reader = nil
	if len(part.waiting) > 0 && !part.queued {
		part.queued = true
		pl.waitq = append(pl.waitq, p)
	}
	if pl.closed {
		return 0, false
	}
	if len(pl.waitq) > 0 {
		q := pl.waitq[0]
		pl.waitq = pl.waitq[1:]
		pl.parts[q].queued = false
		pl.parts[q].reader = r
		return q, true
	}
	if len(pl.parts[p].waiting) == 0 {
		delete(pl.parts, p)
	}
	pl.idlers = append(pl.idlers, r)
	return 0, false
}

// retire closes idle r, unless it was assigned a partition meanwhile.
func (pl *replayPool) retire(r *replayReader) bool {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	i := slices.Index(pl.idlers, r)
	if i < 0 {
		return false // assigned: the partition is in r.assign
	}
	pl.idlers = slices.Delete(pl.idlers, i, i+1)
	pl.readers--
	pl.metrics.readers.Dec()
	return true
}

// start begins a pass of r over partition p: every waiting stream takes
// part. It returns the offset to read from (false: nothing waits).
func (pl *replayPool) start(r *replayReader, p int32) (int64, bool) {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	part := pl.parts[p]
	if len(part.waiting) == 0 {
		return 0, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.part, r.reading = p, true
	r.view = txnview.Filter{}
	r.pos = part.waiting[0].next
	for _, s := range part.waiting {
		r.pos = min(r.pos, s.next)
		r.activate(s)
		pl.metrics.streams.WithLabelValues("waiting").Dec()
	}
	part.waiting = nil
	pl.metrics.passes.Inc()
	return r.pos, true
}

// replayReader is one reader of the pool: one Kafka client, reading one
// partition at a time. mu guards the fields below it; queued is atomic.
type replayReader struct {
	pool      *replayPool
	cl        *kgo.Client
	fetches   fetchGauge
	consuming *int32        // the partition the client consumes (paused between passes)
	assign    chan int32    // a partition for an idle reader
	drained   chan struct{} // a stream took events: queued fell
	queued    atomic.Int64  // bytes of events queued for streams

	mu       sync.Mutex
	part     int32
	reading  bool           // in a pass
	pos      int64          // the pass's next offset
	view     txnview.Filter // the pass's: results of transactions wait for their commit
	active   map[string][]*replayStream
	nActive  int
	detached []*replayStream
}

// activate adds s to r's pass. r.mu must be held.
func (r *replayReader) activate(s *replayStream) {
	s.state = streamActive
	r.active[s.conv] = append(r.active[s.conv], s)
	r.nActive++
	r.pool.metrics.streams.WithLabelValues("reading").Inc()
}

// deactivate takes active s out of r's pass. r.mu must be held.
func (r *replayReader) deactivate(s *replayStream) {
	ss := r.active[s.conv]
	if i := slices.Index(ss, s); i >= 0 {
		ss = slices.Delete(ss, i, i+1)
	}
	if len(ss) == 0 {
		delete(r.active, s.conv)
	} else {
		r.active[s.conv] = ss
	}
	r.nActive--
	r.pool.metrics.streams.WithLabelValues("reading").Dec()
}

// drop takes s, active or detached, out of r. r.mu must be held.
func (r *replayReader) drop(s *replayStream) {
	switch s.state {
	case streamActive:
		r.deactivate(s)
	case streamDetached:
		if i := slices.Index(r.detached, s); i >= 0 {
			r.detached = slices.Delete(r.detached, i, i+1)
		}
		r.pool.metrics.streams.WithLabelValues("waiting").Dec()
	}
	s.state = streamDone
}

// release gives back size bytes a stream took.
func (r *replayReader) release(size int64) {
	r.queued.Add(-size)
	select {
	case r.drained <- struct{}{}:
	default:
	}
}

// run reads partition p, then whatever the pool gives it, until it has
// been idle for the pool's idle time or the pool closes. It owns r.cl.
func (r *replayReader) run(p int32) {
	pl := r.pool
	defer pl.wg.Done()
	defer func() {
		if r.cl != nil {
			r.cl.Close()
		}
	}()
	for {
		err := r.pass(p)
		if err != nil && pl.ctx.Err() == nil {
			pl.log.Warn("replay reader failed", "partition", p, "err", err)
		}
		q, ok := pl.next(r, p)
		if !ok && pl.ctx.Err() != nil {
			return
		}
		if !ok {
			timer := time.NewTimer(pl.idle)
			select {
			case q = <-r.assign:
			case <-timer.C:
				if pl.retire(r) {
					return
				}
				q = <-r.assign
			case <-pl.ctx.Done():
				timer.Stop()
				if pl.retire(r) {
					return
				}
				q = <-r.assign // its streams end in the pass, which sees ctx done
			}
			timer.Stop()
		}
		p = q
	}
}

// pass reads partition p for its waiting streams until every one has its
// range (or left). On an error, the pass's streams end with it.
func (r *replayReader) pass(p int32) (err error) {
	pl := r.pool
	from, ok := pl.start(r, p)
	if !ok {
		return nil
	}
	defer func() {
		if err != nil {
			r.fail(err)
		}
	}()
	if pl.ctx.Err() != nil {
		return errReplayShutdown
	}
	if r.cl == nil {
		if r.cl, err = pl.newClient(append(slices.Clip(pl.opts), kgo.WithHooks(&r.fetches))...); err != nil {
			return fmt.Errorf("replay client: %w", err)
		}
		pl.metrics.clients.Inc()
	} else {
		r.unconsume()
	}
	r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{pl.topic: {p: kgo.NewOffset().At(from)}})
	r.cl.ResumeFetchPartitions(map[string][]int32{pl.topic: {p}})
	r.consuming = &p
	// Paused, the client fetches nothing more while the reader waits or
	// reads another partition.
	defer r.cl.PauseFetchPartitions(map[string][]int32{pl.topic: {p}})
	for {
		r.mu.Lock()
		n := r.nActive
		r.mu.Unlock()
		if n == 0 {
			return nil
		}
		// A bounded poll, so that a pass whose streams all left ends.
		ctx, cancel := context.WithTimeout(pl.ctx, time.Second)
		fetches := r.cl.PollFetches(ctx)
		cancel()
		if pl.ctx.Err() != nil {
			return errReplayShutdown
		}
		var ferr error
		fetches.EachError(func(_ string, _ int32, err error) {
			if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
				ferr = err
			}
		})
		if ferr != nil {
			return ferr
		}
		recs := fetches.Records()
		for len(recs) > 0 {
			// A bounded batch per hold of mu: streams joining the pass
			// (add, under pool.mu) wait for it.
			r.mu.Lock()
			for n := 0; n < replayBatch && len(recs) > 0 && r.queued.Load() <= pl.maxBytes; n++ {
				r.deliver(recs[0], from)
				recs = recs[1:]
			}
			r.complete()
			r.mu.Unlock()
			if len(recs) > 0 && r.queued.Load() > pl.maxBytes {
				select { // over the bound: wait for the streams to take events
				case <-r.drained:
				case <-pl.ctx.Done():
					return errReplayShutdown
				}
			}
		}
	}
}

// unconsume removes the partition the last pass read (paused since) from
// the client, which drops what it fetched beyond the pass. Removing stops
// the client's fetch session, and a fetch in flight then dies with its
// connection: it waits (a bounded time) for the fetch the client had sent
// before the pause, so that a new pass does not cost a new connection.
func (r *replayReader) unconsume() {
	if r.consuming == nil {
		return
	}
	for deadline := time.Now().Add(2 * replayFetchWait); r.fetches.n.Load() > 0; {
		if time.Now().After(deadline) {
			// A fetch whose connection died may not have been read: the
			// count is an estimate, begin it anew.
			r.fetches.n.Store(0)
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.cl.RemoveConsumePartitions(map[string][]int32{r.pool.topic: {*r.consuming}})
	r.consuming = nil
}

// fetchGauge counts a client's fetch requests in flight.
type fetchGauge struct{ n atomic.Int64 }

// OnBrokerWrite implements kgo.HookBrokerWrite.
func (g *fetchGauge) OnBrokerWrite(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, err error) {
	if key == int16(kmsg.Fetch) && err == nil {
		g.n.Add(1)
	}
}

// OnBrokerRead implements kgo.HookBrokerRead.
func (g *fetchGauge) OnBrokerRead(_ kgo.BrokerMetadata, key int16, _ int, _, _ time.Duration, _ error) {
	if key == int16(kmsg.Fetch) {
		g.n.Add(-1)
	}
}

// deliver takes the pass's next record: a plain result, or at a commit
// marker its transaction's results, goes to the pass's streams of its
// conversation whose range holds it (offer). r.mu must be held.
func (r *replayReader) deliver(rec *kgo.Record, from int64) {
	if rec.Partition != r.part || rec.Offset < from {
		return // not of this pass (Remove drops old fetches; this is a guard)
	}
	r.pool.metrics.scanned.Inc()
	r.pos = rec.Offset + 1
	if !rec.Attrs.IsControl() && len(r.active[string(rec.Key)]) == 0 {
		// No stream of the pass wants it; one that joins the pass later
		// starts after it.
		return
	}
	r.view.Add(rec, func(v *kgo.Record) { r.offer(rec, v) })
}

// offer gives result rec, visible at at (rec itself, or the commit marker
// that let it through), to the pass's streams of its conversation whose
// range holds it and that have not had it. r.mu must be held.
func (r *replayReader) offer(at, rec *kgo.Record) {
	ss := r.active[string(rec.Key)]
	if len(ss) == 0 {
		return
	}
	held := int64(0)
	if rec != at {
		held = rec.Offset + 1
	}
	var ev *event
	size := int64(len(rec.Key)) + 2*int64(len(rec.Value)) + recentOverhead
	// Downwards: deactivate shifts only the streams after s.
	for i := len(ss) - 1; i >= 0; i-- {
		s := ss[i]
		if rec.Offset < s.from || at.Offset >= s.to ||
			at.Offset < s.lastOffset || (at.Offset == s.lastOffset && held <= s.lastHeld) {
			continue
		}
		if ev == nil {
			res, err := envelope.DecodeResult(rec)
			if err != nil {
				r.pool.undecoded.Inc()
				return
			}
			ev = &event{partition: at.Partition, offset: at.Offset, held: held, at: rec.Timestamp.UnixMilli(), res: res, json: &lazyJSON{res: res}}
		}
		if len(s.ch) == cap(s.ch) {
			// Too slow for this pass: a later one goes on from here,
			// reading again the transactions this one holds (and rec's).
			r.deactivate(s)
			s.next = rec.Offset
			if o, ok := r.view.Oldest(); ok && o < s.next {
				s.next = o
			}
			s.next = max(s.next, s.from)
			s.state = streamDetached
			r.detached = append(r.detached, s)
			r.pool.metrics.streams.WithLabelValues("waiting").Inc()
			r.pool.metrics.detached.Inc()
			continue
		}
		if q := r.queued.Add(size); q > r.pool.peak.Load() {
			r.pool.peak.Store(q) // under r.mu: readers race only to raise it
		}
		s.ch <- replayItem{ev: ev, size: size, r: r}
		s.lastOffset, s.lastHeld = at.Offset, held
	}
}

// complete ends the pass's streams whose range the pass has read. r.mu
// must be held.
func (r *replayReader) complete() {
	for _, ss := range r.active {
		for _, s := range slices.Clone(ss) {
			if s.to <= r.pos {
				r.deactivate(s)
				r.pool.finish(s, nil)
			}
		}
	}
}

// fail ends the pass's streams, active and detached, with err.
func (r *replayReader) fail(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ss := range r.active {
		for _, s := range slices.Clone(ss) {
			r.deactivate(s)
			r.pool.finish(s, err)
		}
	}
	for _, s := range r.detached {
		r.pool.metrics.streams.WithLabelValues("waiting").Dec()
		r.pool.finish(s, err)
	}
	r.detached = nil
}
