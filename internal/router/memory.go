package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Conversations with memory. A request with memory set is sent to the
// model with its conversation's remembered history before its own
// messages (trimmed: memory_trim.go), and its successful answer is
// appended to that history. The history lives in the compacted history
// topic, one record per conversation and lane holding the whole history
// (envelope.EncodeHistory), on the partition number of the conversation's
// requests partition: the topics are co-partitioned (topicspec checks the
// counts; so does rebuild, and memory requests get a memory_unavailable
// error while they differ).
//
// In memory, every assigned requests partition has a partitionMemory: the
// histories of its lane's conversations, read back from the history
// partition of the same number when the partition is assigned (the
// engine's OnAssigned, before any of its records reach the handler; the
// rebalance waits for it, up to MemoryRebuildTimeout) and dropped when it
// is released. A partition whose rebuild did not finish is loaded again by
// the first memory request that needs it; until that succeeds the request
// fails with an error the engine retries in place (its conversation waits,
// in order; nothing is answered from a partial history).
//
// Order: the engine runs a conversation's requests one at a time, and a
// request's handler returns only once its history record is acknowledged
// (exactly-once: staged in the transaction that commits its result and
// offset) and the in-memory history holds the new turn. So turn N is
// remembered before turn N+1 is processed, here or, after a rebalance or a
// crash, by the next owner, whose rebuild reads the partition to its end
// (exactly-once: to its last stable offset, read_committed). A request
// processed twice (its answer appended, its offset not committed before a
// crash) finds its own turn in the history by request ID: it is sent the
// turns before it and its turn is replaced, never added twice.
//
// Forgetting: a forget_memory record (ingress's DELETE
// /v1/conversations/{id}/history writes one to each lane) travels in the
// conversation's order like a request; its handler writes the tombstone and
// drops the in-memory history, so requests sent after the delete see none.

// CodeMemoryUnavailable is the error code of a memory request that cannot
// have its history: no history topic, or one not co-partitioned with the
// requests topics.
const CodeMemoryUnavailable = "memory_unavailable"

// memory is the router's conversation memory: what it is configured with
// and the histories of the assigned partitions.
type memory struct {
	topic    string // the history topic; "" when the spec has none (memory off)
	budget   memoryBudget
	maxBytes int // a history record's bound: the topic's max.message.bytes less room for headers
	timeout  time.Duration
	eos      bool
	opts     []kgo.Opt // reach the cluster, for the rebuild clients

	mu       sync.Mutex
	parts    map[partitionOf]*partitionMemory
	mismatch string // not "": why the history topic cannot be used (partition counts differ)

	conversations prometheus.GaugeFunc
	rebuilds      *prometheus.CounterVec // result
	rebuildTime   prometheus.Histogram
	trimmed       prometheus.Counter
}

// partitionMemory holds one requests partition's conversation histories.
type partitionMemory struct {
	lane      string
	partition int32

	mu     sync.Mutex
	loaded bool
	convs  map[string]*pb.History // by history key
	// loading holds one token: whoever takes it loads the partition.
	loading chan struct{}
}

func newMemory(cfg *Config) *memory {
	m := &memory{
		budget:  memoryBudget{messages: cfg.MemoryMaxMessages, tokens: cfg.MemoryMaxTokens},
		timeout: cfg.MemoryRebuildTimeout,
		eos:     cfg.ExactlyOnce,
		parts:   map[partitionOf]*partitionMemory{},
		opts:    cfg.Kafka.Opts(cfg.Logger),
	}
	if _, ok := cfg.Topics.Topic(topicspec.History); ok {
		m.topic = cfg.Topics.Name(topicspec.History)
		if n := cfg.Topics.MaxMessageBytes(topicspec.History); n > 0 {
			m.maxBytes = max(int(n)-4096, 1024)
		}
	}
	m.conversations = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "switchboard_router_memory_conversations",
		Help: "Conversation histories held in memory for the assigned partitions.",
	}, func() float64 {
		m.mu.Lock()
		defer m.mu.Unlock()
		n := 0
		for _, p := range m.parts {
			p.mu.Lock()
			n += len(p.convs)
			p.mu.Unlock()
		}
		return float64(n)
	})
	m.rebuilds = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "switchboard_router_memory_rebuilds_total",
		Help: "Partitions whose conversation histories were read back from the history topic, by result (ok, incomplete: loaded again on first use).",
	}, []string{"result"})
	m.rebuildTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "switchboard_router_memory_rebuild_seconds",
		Help:    "Time to read back the histories of the partitions of one assignment (or one late load).",
		Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
	})
	m.trimmed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "switchboard_router_memory_trimmed_turns_total",
		Help: "Remembered turns dropped (oldest first) to keep histories within the memory budget and the topic's record size.",
	})
	cfg.Registry.MustRegister(m.conversations, m.rebuilds, m.rebuildTime, m.trimmed)
	return m
}

// assigned is the engine's OnAssigned: the seen sets (dedupe.go) and the
// conversation histories of the new partitions are rebuilt, at once.
func (r *Router) assigned(ctx context.Context, assigned map[string]map[int32]int64) {
	var wg sync.WaitGroup
	wg.Go(func() { r.assignedSeen(ctx, assigned) })
	wg.Go(func() { r.assignedMemory(ctx, assigned) })
	wg.Wait()
}

// released is the engine's OnReleased.
func (r *Router) released(released map[string][]int32) {
	r.releasedSeen(released)
	m := r.mem
	m.mu.Lock()
	defer m.mu.Unlock()
	for topic, parts := range released {
		for _, p := range parts {
			delete(m.parts, partitionOf{topic, p})
		}
	}
}

// assignedMemory gives each new partition its histories, read back from
// the history topic within MemoryRebuildTimeout.
func (r *Router) assignedMemory(ctx context.Context, assigned map[string]map[int32]int64) {
	m := r.mem
	if m.topic == "" {
		return
	}
	var parts []*partitionMemory
	m.mu.Lock()
	for topic, ps := range assigned {
		for p := range ps {
			pm := &partitionMemory{lane: laneOf(topic), partition: p, convs: map[string]*pb.History{}, loading: make(chan struct{}, 1)}
			pm.loading <- struct{}{}
			m.parts[partitionOf{topic, p}] = pm
			parts = append(parts, pm)
		}
	}
	m.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	if err := r.loadMemory(ctx, parts); err != nil {
		r.log.Warn("conversation histories not rebuilt in time; memory requests of these partitions will load them first",
			"err", err)
	}
}

// partitionMemoryOf returns the memory of rec's partition, nil if it is
// not assigned (any more).
func (r *Router) partitionMemoryOf(rec *kgo.Record) *partitionMemory {
	r.mem.mu.Lock()
	defer r.mem.mu.Unlock()
	return r.mem.parts[partitionOf{rec.Topic, rec.Partition}]
}

// unavailable returns why memory cannot be used at all, or "".
func (m *memory) unavailable() string {
	if m.topic == "" {
		return "conversation memory is off: the topics spec has no history topic"
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.mismatch
}

// ready waits until pm is loaded, loading it if no one else is, within
// MemoryRebuildTimeout. An error means the handler should fail and be
// retried.
func (r *Router) ready(ctx context.Context, pm *partitionMemory) error {
	for {
		pm.mu.Lock()
		loaded := pm.loaded
		pm.mu.Unlock()
		if loaded {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-pm.loading:
		}
		pm.mu.Lock()
		loaded = pm.loaded
		pm.mu.Unlock()
		if loaded {
			pm.loading <- struct{}{}
			return nil
		}
		lctx, cancel := context.WithTimeout(ctx, r.mem.timeout)
		err := r.loadMemory(lctx, []*partitionMemory{pm})
		cancel()
		pm.loading <- struct{}{}
		if err != nil {
			return fmt.Errorf("load the conversation histories of %s/%d: %w", pm.lane, pm.partition, err)
		}
	}
}

// loadMemory reads the history partitions of parts from their start to
// their end (exactly-once: their last stable offset) and fills parts with
// their lanes' histories. Each part is marked loaded once its history
// partition has been read to the end; the error says which were not. It
// also checks that the history topic is co-partitioned with the requests
// topics.
func (r *Router) loadMemory(ctx context.Context, parts []*partitionMemory) error {
	m := r.mem
	start := time.Now()
	defer func() { m.rebuildTime.Observe(time.Since(start).Seconds()) }()
	adm := kadm.NewClient(r.client)
	ends, err := adm.ListEndOffsets(ctx, append([]string{m.topic}, r.topics...)...)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		m.rebuilds.WithLabelValues("incomplete").Add(float64(len(parts)))
		return fmt.Errorf("list end offsets: %w", err)
	}
	if r.checkCopartitioned(ends) != "" {
		// Histories cannot be found where they should be; memory requests
		// are refused until the topics match.
		for _, pm := range parts {
			pm.markLoaded(nil)
		}
		return nil
	}
	if m.eos {
		// Only committed histories: read_committed stops at the last
		// stable offset.
		if ends, err = adm.ListCommittedOffsets(ctx, m.topic); err == nil {
			err = ends.Error()
		}
		if err != nil {
			m.rebuilds.WithLabelValues("incomplete").Add(float64(len(parts)))
			return fmt.Errorf("list stable offsets: %w", err)
		}
	}
	starts, err := adm.ListStartOffsets(ctx, m.topic)
	if err == nil {
		err = starts.Error()
	}
	if err != nil {
		m.rebuilds.WithLabelValues("incomplete").Add(float64(len(parts)))
		return fmt.Errorf("list start offsets: %w", err)
	}
	// Both lanes' partitions of one number read the same history partition.
	byPartition := map[int32][]*partitionMemory{}
	consume := map[int32]kgo.Offset{}
	until := map[int32]int64{}
	got := map[*partitionMemory]map[string]*pb.History{}
	for _, pm := range parts {
		got[pm] = map[string]*pb.History{}
		from, ok1 := starts.Lookup(m.topic, pm.partition)
		end, ok2 := ends.Lookup(m.topic, pm.partition)
		if !ok1 || !ok2 {
			continue // reported below as not loaded
		}
		byPartition[pm.partition] = append(byPartition[pm.partition], pm)
		if from.Offset >= end.Offset {
			continue // empty: nothing to read
		}
		consume[pm.partition] = kgo.NewOffset().At(from.Offset)
		until[pm.partition] = end.Offset
	}
	read, bad := 0, 0
	if len(consume) > 0 {
		opts := append(append([]kgo.Opt(nil), m.opts...),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{m.topic: consume}),
			kgo.KeepControlRecords()) // a transaction's commit marker may be a partition's last offset
		if m.eos {
			opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			m.rebuilds.WithLabelValues("incomplete").Add(float64(len(parts)))
			return fmt.Errorf("history reader: %w", err)
		}
		defer cl.Close()
		for len(until) > 0 && ctx.Err() == nil {
			fetches := cl.PollFetches(ctx)
			fetches.EachRecord(func(rec *kgo.Record) {
				end, ok := until[rec.Partition]
				if !ok || rec.Offset >= end {
					return
				}
				if !rec.Attrs.IsControl() {
					read++
					if !collect(rec, byPartition[rec.Partition], got) {
						bad++
					}
				}
				if rec.Offset+1 >= end {
					delete(until, rec.Partition)
					cl.PauseFetchPartitions(map[string][]int32{m.topic: {rec.Partition}})
				}
			})
		}
	}
	var missing []string
	for _, pm := range parts {
		_, found := byPartition[pm.partition]
		if _, reading := until[pm.partition]; !found || reading {
			missing = append(missing, fmt.Sprintf("%s/%d", pm.lane, pm.partition))
			m.rebuilds.WithLabelValues("incomplete").Inc()
			continue
		}
		pm.markLoaded(got[pm])
		m.rebuilds.WithLabelValues("ok").Inc()
	}
	if bad > 0 {
		r.log.Warn("undecodable history records skipped", "topic", m.topic, "records", bad)
	}
	if len(missing) > 0 {
		return fmt.Errorf("partitions %v not read to their end (%d records read): %w", missing, read, cmpErr(ctx.Err()))
	}
	r.log.Info("conversation histories rebuilt", "partitions", len(parts), "records", read, "took", time.Since(start))
	return nil
}

func cmpErr(err error) error {
	if err == nil {
		return errors.New("partition unknown to the cluster")
	}
	return err
}

// collect applies a history record to the histories of the parts of its
// partition whose lane it has (a later record of a key replaces an
// earlier one; a tombstone removes it). It reports false for an
// undecodable record, which is skipped.
func collect(rec *kgo.Record, parts []*partitionMemory, got map[*partitionMemory]map[string]*pb.History) bool {
	lane, _, _, err := envelope.ParseHistoryKey(rec.Key)
	if err != nil {
		return false
	}
	h, err := envelope.DecodeHistory(rec)
	if err != nil {
		return false
	}
	for _, pm := range parts {
		if pm.lane != lane {
			continue
		}
		if h == nil {
			delete(got[pm], string(rec.Key))
		} else {
			got[pm][string(rec.Key)] = h
		}
	}
	return true
}

// markLoaded installs the histories read back and marks pm loaded.
func (pm *partitionMemory) markLoaded(convs map[string]*pb.History) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if convs != nil {
		pm.convs = convs
	}
	pm.loaded = true
}

// checkCopartitioned compares the partition counts of the history and
// requests topics in ends, records the outcome and returns why they are
// not co-partitioned, or "".
func (r *Router) checkCopartitioned(ends kadm.ListedOffsets) string {
	m := r.mem
	why := ""
	h := len(ends[m.topic])
	for _, t := range r.topics {
		if n := len(ends[t]); n != h {
			why = fmt.Sprintf("the history topic %s has %d partitions, the requests topic %s %d: "+
				"histories are not co-partitioned with their conversations (run the topics tool)", m.topic, h, t, n)
		}
	}
	m.mu.Lock()
	changed := why != m.mismatch
	m.mismatch = why
	m.mu.Unlock()
	if changed && why != "" {
		r.log.Error("conversation memory refused", "err", why)
	}
	return why
}

// get returns the conversation's history (nil: none).
func (pm *partitionMemory) get(key string) *pb.History {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	return pm.convs[key]
}

// set replaces the conversation's history (nil: forgets it).
func (pm *partitionMemory) set(key string, h *pb.History) {
	pm.mu.Lock()
	defer pm.mu.Unlock()
	if h == nil {
		delete(pm.convs, key)
	} else {
		pm.convs[key] = h
	}
}

// recollection is what a memory request was given from its history: the
// prompt, and where to remember its answer.
type recollection struct {
	pm      *partitionMemory
	key     string
	history *pb.History // nil: none yet
	prompt  []*pb.Message
}

// recall prepares rq's prompt from its conversation's history. It answers
// rq with a memory_unavailable error (and reports done) when memory cannot
// be used, and returns an error when the partition's histories could not
// be loaded (the engine retries the request).
func (r *Router) recall(ctx context.Context, rq *job) (done bool, err error) {
	if why := r.mem.unavailable(); why != "" {
		r.metrics.processed.WithLabelValues(rq.lane, CodeMemoryUnavailable).Inc()
		rq.out.terminal(1, &pb.Result{Body: &pb.Result_Error{Error: &pb.Error{Code: CodeMemoryUnavailable, Message: why}}})
		return true, rq.out.wait()
	}
	pm := r.partitionMemoryOf(rq.out.rec)
	if pm == nil {
		return false, errors.New("partition not assigned")
	}
	if err := r.ready(ctx, pm); err != nil {
		return false, err
	}
	if why := r.mem.unavailable(); why != "" { // the load found the topics apart
		return r.recall(ctx, rq)
	}
	req := rq.req
	key := string(envelope.HistoryKey(req.GetLane(), req.GetTenant(), req.GetConversationId()))
	h := pm.get(key)
	rq.memory = &recollection{pm: pm, key: key, history: h, prompt: r.mem.budget.prompt(h, req)}
	return false, nil
}

// rememberAnswer writes rq's output (its final result is in rq.out) and
// the history that follows its answer, and then holds that history in
// memory. Exactly-once: the history record is staged with the final
// result, in one transaction. At least once: it is produced once the final
// result is acknowledged, so a history never holds an answer the results
// topic lacks (a crash in between leaves the request to be processed
// again, from the history without it).
func (r *Router) rememberAnswer(rq *job, answer string) error {
	rc, out := rq.memory, rq.out
	next := r.mem.budget.appended(rc.history, rq.req, answer, r.mem.maxBytes)
	next.UpdatedAt = timestamppb.Now()
	rec, err := envelope.EncodeHistory(r.mem.topic, out.rec.Partition, next)
	if err != nil {
		return fmt.Errorf("encode history: %w", err)
	}
	if !r.eos {
		if err := out.wait(); err != nil {
			return err
		}
	}
	out.stageOrSend(rec)
	if err := out.wait(); err != nil || out.fellBack {
		return err // fellBack: the answer was too large to send; not remembered
	}
	r.mem.trimmed.Add(float64(next.GetDropped() - rc.history.GetDropped()))
	rc.pm.set(rc.key, next)
	return nil
}

// forget handles a forget_memory record: it tombstones the conversation's
// history in the record's lane and drops it from memory. It answers
// nothing.
func (r *Router) forget(ctx context.Context, rec *kgo.Record, req *pb.Request) error {
	if r.mem.topic == "" {
		return nil // nothing is remembered
	}
	pm := r.partitionMemoryOf(rec)
	if pm == nil {
		return errors.New("partition not assigned")
	}
	if err := r.ready(ctx, pm); err != nil {
		return err
	}
	out := &emitter{r: r, ctx: ctx, rec: rec, req: req}
	out.stageOrSend(envelope.HistoryTombstone(r.mem.topic, rec.Partition, req.GetLane(), req.GetTenant(), req.GetConversationId()))
	if err := out.wait(); err != nil {
		return err
	}
	pm.set(string(envelope.HistoryKey(req.GetLane(), req.GetTenant(), req.GetConversationId())), nil)
	r.metrics.processed.WithLabelValues(laneOf(rec.Topic), "forgotten").Inc()
	return nil
}

// stageOrSend writes a history record with the request's output: staged
// for the transaction in exactly-once mode, produced now otherwise.
func (e *emitter) stageOrSend(rec *kgo.Record) {
	if e.r.eos {
		e.staged = append(e.staged, rec)
		return
	}
	e.send(rec)
}

// historyPartitioner is the producers' partitioner: records of the history
// topic go to the partition they name (their conversation's requests
// partition number), every other record where franz-go's default puts it
// (murmur2 of the key, as the Java client).
func historyPartitioner(historyTopic string) kgo.Partitioner {
	return partitioner{history: historyTopic, manual: kgo.ManualPartitioner(),
		fallback: kgo.UniformBytesPartitioner(64<<10, true, true, nil)}
}

type partitioner struct {
	history          string
	manual, fallback kgo.Partitioner
}

func (p partitioner) ForTopic(topic string) kgo.TopicPartitioner {
	if topic == p.history {
		return p.manual.ForTopic(topic)
	}
	return p.fallback.ForTopic(topic)
}
