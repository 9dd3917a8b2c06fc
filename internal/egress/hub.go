package egress

import (
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/txnview"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// event is one result with its place in the results topic.
type event struct {
	// ctx is the record's context (its trace, when tracing is on); nil on
	// replays.
	ctx       context.Context
	partition int32
	// offset is where the result became visible: its record's offset, or
	// for a transactional result its commit marker's, with held 1 + its
	// record's offset (see cursor).
	offset int64
	held   int64
	at     int64 // the result record's timestamp, Unix milliseconds (cursor.at)
	res    *pb.Result
	// json is the result's API JSON, encoded once for every subscriber
	// of the conversation.
	json *lazyJSON
	// timestamp is the record's, for live events only (delivery latency
	// is not measured on replays).
	timestamp time.Time
}

// subscriber is one open stream's mailbox. The hub fills ch with one
// shared, read-only event per record (a pointer: a mailbox of the default
// 1,024 slots takes 8 KiB, not the 72 KiB of events by value, which
// matters when thousands of streams open at once) and never blocks on it:
// a full mailbox ends the subscription (done is closed with reason
// "overflow"), so one slow client cannot stall the others.
type subscriber struct {
	conv   string
	ch     chan *event
	done   chan struct{} // closed by the hub; then read reason
	reason string
}

// hub routes live results to the subscribers of their conversation and
// keeps the index of recent results (recent.go). publish is called by the
// single poll goroutine; subscribe and unsubscribe by HTTP handlers. mu
// guards every field but metrics, and the contents of recent.
type hub struct {
	metrics *metrics
	// views hold back transactional results until their transaction
	// commits (package txnview), per partition. Only publish's goroutine
	// uses them.
	views   map[int32]*txnview.Filter
	visible []*kgo.Record // publish's scratch
	mu      sync.Mutex
	next    map[int32]int64 // per partition: the offset the live feed delivers next
	subs    map[string]map[*subscriber]struct{}
	recent  *recent // nil: no index, every replay reads Kafka
	started time.Time
	closed  bool
}

// newHub returns a hub; rc (nil: none) is its index of recent results.
func newHub(m *metrics, rc *recent) *hub {
	return &hub{metrics: m, views: map[int32]*txnview.Filter{}, next: map[int32]int64{},
		subs: map[string]map[*subscriber]struct{}{}, recent: rc}
}

// start records where the live feed begins in each partition: every
// record before it is older than floor (see recent.start). Records older
// than started are read while catching up: their delivery latency is not
// measured.
func (h *hub) start(next map[int32]int64, floor, started time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.started = started
	for p, o := range next {
		h.next[p] = o
	}
	if h.recent != nil {
		h.recent.start(next, floor)
	}
}

// windowStart returns the first offset of partition at or after t, when
// the index of recent results knows it (see recent.windowStart).
func (h *hub) windowStart(partition int32, t time.Time) (int64, bool) {
	if h.recent == nil {
		return 0, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.recent.windowStart(partition, t)
}

// partitions returns how many partitions the live feed reads.
func (h *hub) partitions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.next)
}

// subscribe registers a mailbox for conv, whose results are on partition.
// It returns the offset liveFrom from which the live feed will fill the
// mailbox: everything before it must come from a replay. When the index of
// recent results covers replayFrom, it also returns that replay, conv's
// results [replayFrom, liveFrom), and ok true; otherwise the caller
// replays from Kafka. Because all of it happens under mu, which publish
// holds while it indexes a record and advances the live position, no
// record is delivered twice or missed between replay and live.
func (h *hub) subscribe(conv string, partition int32, buffer int, replayFrom int64) (s *subscriber, liveFrom int64, replay []event, ok bool) {
	s = &subscriber{conv: conv, ch: make(chan *event, buffer), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	liveFrom = h.next[partition]
	if h.recent != nil {
		replay, ok = h.recent.replay(conv, partition, replayFrom)
	}
	if h.closed {
		s.reason = endShutdown
		close(s.done)
		return s, liveFrom, replay, ok
	}
	m := h.subs[conv]
	if m == nil {
		m = map[*subscriber]struct{}{}
		h.subs[conv] = m
	}
	m[s] = struct{}{}
	return s, liveFrom, replay, ok
}

// unsubscribe removes s; it is safe to call more than once.
func (h *hub) unsubscribe(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.remove(s, "")
}

// remove drops s from the routing table and closes its done channel with
// reason (empty reason: the subscriber left by itself). mu must be held.
func (h *hub) remove(s *subscriber, reason string) {
	m := h.subs[s.conv]
	if _, ok := m[s]; !ok {
		return
	}
	delete(m, s)
	if len(m) == 0 {
		delete(h.subs, s.conv)
	}
	s.reason = reason
	close(s.done)
}

// publish takes the next record of its partition. A transactional
// record is held until its transaction ends (txnview); plain records, and
// at a commit marker the transaction's records, are indexed and forwarded
// to the subscribers of their conversation, at the offset where they
// became visible (rec's). With an index every result is decoded (outside
// mu); without, only those of subscribed conversations.
func (h *hub) publish(rec *kgo.Record) {
	view := h.views[rec.Partition]
	if view == nil {
		view = &txnview.Filter{}
		h.views[rec.Partition] = view
	}
	visible := h.visible[:0]
	out, n := view.Add(rec, func(r *kgo.Record) { visible = append(visible, r) })
	h.visible = visible
	switch out {
	case txnview.Held:
		h.metrics.txnHeld.Inc()
	case txnview.Committed:
		h.metrics.txnHeld.Sub(float64(n))
	case txnview.Aborted:
		h.metrics.txnHeld.Sub(float64(n))
		h.metrics.txnAborted.Add(float64(n))
	}
	if len(visible) == 0 {
		// A held record, or a marker that lets nothing through: the
		// offset is covered, nothing is kept.
		h.mu.Lock()
		defer h.mu.Unlock()
		h.next[rec.Partition] = rec.Offset + 1
		if h.recent != nil {
			h.recent.add(rec.Partition, rec.Offset, rec.Key, len(rec.Value), rec.Timestamp, nil, nil, time.Now())
		}
		return
	}
	for i, r := range visible {
		held := int64(0)
		if r != rec {
			held = r.Offset + 1
		}
		h.publishAt(rec, r, held, i > 0)
	}
	clear(h.visible)
}

// publishAt indexes and forwards r, visible at at's offset (at is r, or
// the commit marker that let r through; held: see event). again: an
// earlier record became visible at the same offset.
func (h *hub) publishAt(at, r *kgo.Record, held int64, again bool) {
	var res *pb.Result
	decoded := false
	if h.recent != nil {
		res, decoded = h.decode(r), true
	}
	var lj *lazyJSON
	if res != nil {
		lj = &lazyJSON{res: res}
	}
	now := time.Now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next[at.Partition] = at.Offset + 1
	if h.recent != nil {
		h.recent.addAt(at.Partition, at.Offset, held, again, r.Key, len(r.Value), r.Timestamp, res, lj, now)
	}
	subs := h.subs[string(r.Key)]
	if len(subs) == 0 {
		return
	}
	if !decoded {
		if res = h.decode(r); res != nil {
			lj = &lazyJSON{res: res}
		}
	}
	if res == nil {
		return
	}
	ev := &event{ctx: r.Context, partition: at.Partition, offset: at.Offset, held: held, at: r.Timestamp.UnixMilli(), res: res, json: lj}
	if !r.Timestamp.Before(h.started) {
		ev.timestamp = r.Timestamp
	}
	for s := range subs {
		select {
		case s.ch <- ev:
		default:
			h.metrics.overflows.Inc()
			h.remove(s, endOverflow)
		}
	}
}

// decode decodes rec's result; nil (counted) when it cannot.
func (h *hub) decode(rec *kgo.Record) *pb.Result {
	res, err := envelope.DecodeResult(rec)
	if err != nil {
		h.metrics.undecodable.Inc()
		return nil
	}
	return res
}

// closeAll ends every subscription: the service is stopping.
func (h *hub) closeAll() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	for _, m := range h.subs {
		for s := range m {
			h.remove(s, endShutdown)
		}
	}
}
