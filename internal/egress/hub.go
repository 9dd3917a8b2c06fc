package egress

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// event is one result with its place in the results topic.
type event struct {
	// ctx is the record's context (its trace, when tracing is on); nil on
	// replays.
	ctx       context.Context
	partition int32
	offset    int64
	res       *pb.Result
	// json is the result's API JSON, encoded once for every subscriber
	// of the conversation.
	json *lazyJSON
	// timestamp is the record's, for live events only (delivery latency
	// is not measured on replays).
	timestamp time.Time
}

// subscriber is one open stream's mailbox. The hub fills ch and never
// blocks on it: a full mailbox ends the subscription (done is closed with
// reason "overflow"), so one slow client cannot stall the others.
type subscriber struct {
	conv   string
	ch     chan event
	done   chan struct{} // closed by the hub; then read reason
	reason string
}

// hub routes live results to the subscribers of their conversation.
// publish is called by the single poll goroutine; subscribe and unsubscribe
// by HTTP handlers. mu guards every field but metrics.
type hub struct {
	metrics *metrics
	mu      sync.Mutex
	next    map[int32]int64 // per partition: the offset the live feed delivers next
	subs    map[string]map[*subscriber]struct{}
	closed  bool
}

func newHub(m *metrics) *hub {
	return &hub{metrics: m, next: map[int32]int64{}, subs: map[string]map[*subscriber]struct{}{}}
}

// start records where the live feed begins in each partition.
func (h *hub) start(next map[int32]int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for p, o := range next {
		h.next[p] = o
	}
}

// partitions returns how many partitions the live feed reads.
func (h *hub) partitions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.next)
}

// subscribe registers a mailbox for conv, whose results are on partition.
// It returns the offset from which the live feed will fill the mailbox:
// everything before it must come from a replay. Because both happen under
// mu, no record is delivered twice or missed between replay and live.
func (h *hub) subscribe(conv string, partition int32, buffer int) (*subscriber, int64) {
	s := &subscriber{conv: conv, ch: make(chan event, buffer), done: make(chan struct{})}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		s.reason = endShutdown
		close(s.done)
		return s, h.next[partition]
	}
	m := h.subs[conv]
	if m == nil {
		m = map[*subscriber]struct{}{}
		h.subs[conv] = m
	}
	m[s] = struct{}{}
	return s, h.next[partition]
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

// publish forwards rec to the subscribers of its conversation.
func (h *hub) publish(rec *kgo.Record) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.next[rec.Partition] = rec.Offset + 1
	subs := h.subs[string(rec.Key)]
	if len(subs) == 0 || rec.Attrs.IsControl() {
		return
	}
	res, err := envelope.DecodeResult(rec)
	if err != nil {
		h.metrics.undecodable.Inc()
		return
	}
	ev := event{ctx: rec.Context, partition: rec.Partition, offset: rec.Offset, res: res, json: &lazyJSON{res: res}, timestamp: rec.Timestamp}
	for s := range subs {
		select {
		case s.ch <- ev:
		default:
			h.metrics.overflows.Inc()
			h.remove(s, endOverflow)
		}
	}
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

// lazyJSON encodes a result to its API JSON on first use, once, however
// many streams (on their own goroutines) ask.
type lazyJSON struct {
	res  *pb.Result
	once sync.Once
	data []byte
	err  error
}

func (l *lazyJSON) bytes() ([]byte, error) {
	l.once.Do(func() {
		var buf bytes.Buffer
		l.err = appendResultJSON(&buf, l.res)
		l.data = buf.Bytes()
	})
	return l.data, l.err
}
