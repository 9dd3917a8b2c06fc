package loadtest

import (
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// ledger accounts for every request of a run: what was sent and when it
// was meant to be sent, what the entry point said, and every answer. It is
// safe for concurrent use; mu guards everything in it.
//
// Order is judged per conversation by send sequence: the caller
// serialises a conversation's sends, so the sequence is the order the
// entry point stored them in, and a terminal answer to an earlier message
// that arrives after the answer to a later one is an order violation. A
// request accepted but never answered is lost (not out of order); a second
// terminal answer to a request is a duplicate (not out of order).
type ledger struct {
	mu      sync.Mutex
	begin   time.Time
	warmup  time.Duration
	entries map[string]*entry
	convs   map[string]*convState
	classes map[string]*classStats
	errors  map[string]int
	resent  map[string]int // refusals answered with a resend, by code
	bad     map[string]*badEntry
	direct  *directStats
	pending int // accepted requests without a terminal answer yet
	total   struct{ sent, answered, errors int }
}

type entry struct {
	class      *classStats
	conv       *convState
	seq        int
	intended   time.Time
	measured   bool
	accepted   bool
	sendFailed bool
	resends    int // sends after the first (retry.go)
	terminals  int
	stored     int // times seen in the requests topic
	firstChunk bool
	done       chan struct{} // closed at the first terminal answer
	// The first terminal answer, for the ordered limit (limit.go): when it
	// came, whether it was a final result, and its model time.
	answeredAt time.Time
	final      bool
	modelTime  time.Duration
}

type convState struct {
	id                string
	entries           []*entry // in send order (by seq)
	next              int      // sequence number of the next message
	expect            int      // one past the highest answered sequence number
	lost, dups, order int
	storedExpect      int // one past the highest sequence number seen in the requests topic
	storedOrder       int
}

type classStats struct {
	name                                 string
	sent, measured, accepted, sendErrors int
	answered, succeeded, failed          int
	resends, retried, succeededFirst     int
	lost, dups, order                    int
	stored, storedOrder, convStoredOrder int
	convLost, convDups, convOrder, convs int
	e2e, ttfc, model, overhead           *hdrhistogram.Histogram
	limit, overLimit                     *hdrhistogram.Histogram // ordered limit (limit.go)
	firstIntended, lastIntended          time.Time
	firstAnswer, lastAnswer              time.Time
	sendLagMax                           time.Duration
	series                               map[int]*second
}

type second struct {
	sent, answered, errors int
	e2e                    *hdrhistogram.Histogram
}

type badEntry struct {
	kind     string
	sendCode string // "" when accepted
	result   string // "" until an answer came: error code, or "final"
}

type directStats struct {
	latency, ttfc *hdrhistogram.Histogram
	errors        map[string]int
	sent          int
}

// histMaxMicros is the histograms' range; micros clamps every value into it,
// so RecordValue never fails and its error is ignored.
const histMaxMicros = 600_000_000 // 10 minutes

func newHist() *hdrhistogram.Histogram { return hdrhistogram.New(1, histMaxMicros, 3) }

func newLedger(begin time.Time, warmup time.Duration) *ledger {
	return &ledger{begin: begin, warmup: warmup, entries: map[string]*entry{}, convs: map[string]*convState{},
		classes: map[string]*classStats{}, errors: map[string]int{}, resent: map[string]int{}, bad: map[string]*badEntry{},
		direct: &directStats{latency: newHist(), ttfc: newHist(), errors: map[string]int{}}}
}

func (l *ledger) class(name string) *classStats {
	c := l.classes[name]
	if c == nil {
		c = &classStats{name: name, e2e: newHist(), ttfc: newHist(), model: newHist(), overhead: newHist(),
			limit: newHist(), overLimit: newHist(), series: map[int]*second{}}
		l.classes[name] = c
	}
	return c
}

func (l *ledger) second(c *classStats, t time.Time) *second {
	i := max(0, int(t.Sub(l.begin)/time.Second))
	s := c.series[i]
	if s == nil {
		s = &second{e2e: hdrhistogram.New(1, histMaxMicros, 2)}
		c.series[i] = s
	}
	return s
}

func micros(d time.Duration) int64 { return min(max(1, d.Microseconds()), histMaxMicros) }

// register records that request id of class in conv is about to be sent,
// meant for intended; it returns the entry whose done channel closes at
// its first terminal answer. The caller serialises the registrations and
// sends of one conversation.
func (l *ledger) register(class, conv, id string, intended time.Time) *entry {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := l.class(class)
	cs := l.convs[conv]
	if cs == nil {
		cs = &convState{id: conv}
		l.convs[conv] = cs
		c.convs++
	}
	e := &entry{class: c, conv: cs, seq: cs.next, intended: intended, measured: intended.Sub(l.begin) >= l.warmup, done: make(chan struct{})}
	cs.next++
	cs.entries = append(cs.entries, e)
	l.entries[id] = e
	c.sent++
	l.total.sent++
	l.second(c, intended).sent++
	if e.measured {
		c.measured++
		if c.firstIntended.IsZero() || intended.Before(c.firstIntended) {
			c.firstIntended = intended
		}
		if intended.After(c.lastIntended) {
			c.lastIntended = intended
		}
	}
	if lag := time.Since(intended); lag > c.sendLagMax {
		c.sendLagMax = lag
	}
	return e
}

// sent records the outcome of the entry's Send.
func (l *ledger) sent(e *entry, err error, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		e.accepted = true
		e.class.accepted++
		if e.terminals == 0 {
			l.pending++
		}
		return
	}
	l.total.errors++
	e.sendFailed = true
	e.class.sendErrors++
	l.errors[errorCode(err)]++
	l.second(e.class, at).errors++
}

// resend records that the entry's request is sent again after err: the
// same request (retry.go), so the entry stays one request with one answer
// expected; only its outcome (sent) counts as a send error.
func (l *ledger) resend(e *entry, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.resends++
	l.resent[errorCode(err)]++
}

// observe accounts for one answer; answers to requests it does not know
// are ignored.
func (l *ledger) observe(a Answer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.bad[a.ID]; b != nil {
		if a.Kind == Failed && b.result == "" {
			b.result = a.ErrorCode
		} else if a.Kind == Final && b.result == "" {
			b.result = "final"
		}
		return
	}
	e := l.entries[a.ID]
	if e == nil {
		return
	}
	c := e.class
	if a.Kind == Chunk {
		if !e.firstChunk && e.terminals == 0 {
			e.firstChunk = true
			if e.measured {
				_ = c.ttfc.RecordValue(micros(a.At.Sub(e.intended)))
			}
		}
		return
	}
	e.terminals++
	if e.terminals > 1 {
		c.dups++
		e.conv.dups++
		return
	}
	close(e.done)
	e.answeredAt, e.final, e.modelTime = a.At, a.Kind == Final, a.ModelTime
	l.total.answered++
	if e.accepted {
		l.pending--
	}
	if e.seq < e.conv.expect {
		c.order++
		e.conv.order++
	}
	e.conv.expect = max(e.conv.expect, e.seq+1)
	sec := l.second(c, a.At)
	if a.Kind == Failed {
		l.errors["result_"+a.ErrorCode]++
		l.total.errors++
		sec.errors++
	}
	sec.answered++
	e2e := a.At.Sub(e.intended)
	if a.Kind == Final {
		_ = sec.e2e.RecordValue(micros(e2e))
	}
	if !e.measured {
		return
	}
	c.answered++
	if c.firstAnswer.IsZero() || a.At.Before(c.firstAnswer) {
		c.firstAnswer = a.At
	}
	if a.At.After(c.lastAnswer) {
		c.lastAnswer = a.At
	}
	if a.Kind == Failed {
		c.failed++
		return
	}
	c.succeeded++
	_ = c.e2e.RecordValue(micros(e2e))
	if a.ModelTime > 0 {
		_ = c.model.RecordValue(micros(a.ModelTime))
		_ = c.overhead.RecordValue(micros(e2e - a.ModelTime))
	}
}

// observeStored accounts for a request seen in the requests topic: a
// request stored before an earlier-sent request of its conversation is a
// stored-order violation. A refused request is never stored, so a gap in
// the sequence is not a violation.
func (l *ledger) observeStored(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e := l.entries[id]
	if e == nil {
		return
	}
	e.stored++
	if e.stored > 1 {
		return // a producer's retry stored it twice; readers drop it by request_id
	}
	e.class.stored++
	if e.seq < e.conv.storedExpect {
		e.class.storedOrder++
		e.conv.storedOrder++
	}
	e.conv.storedExpect = max(e.conv.storedExpect, e.seq+1)
}

// registerBad records a bad input about to be sent.
func (l *ledger) registerBad(id, kind string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.bad[id] = &badEntry{kind: kind}
}

// badSent records the outcome of a bad input's send.
func (l *ledger) badSent(id string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if b := l.bad[id]; b != nil && err != nil {
		b.sendCode = errorCode(err)
	}
}

// outstanding returns how many accepted requests await their answer.
func (l *ledger) outstanding() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.pending
}

// progress is a snapshot for the progress line.
type progress struct {
	sent, answered, errors, waiting int
	sentRate, answeredRate, p99     float64
}

// snapshot returns the totals and the last complete second's rates and
// end-to-end p99 (the highest of the classes).
func (l *ledger) snapshot(now time.Time) progress {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := progress{sent: l.total.sent, answered: l.total.answered, errors: l.total.errors, waiting: l.pending}
	i := int(now.Sub(l.begin)/time.Second) - 1
	for _, c := range l.classes {
		if s := c.series[i]; s != nil {
			p.sentRate += float64(s.sent)
			p.answeredRate += float64(s.answered)
			if s.e2e.TotalCount() > 0 {
				p.p99 = max(p.p99, float64(s.e2e.ValueAtQuantile(99))/1000)
			}
		}
	}
	return p
}

// recordDirect records one direct call to the model.
func (l *ledger) recordDirect(latency, ttfc time.Duration, measured bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.direct.sent++
	if err != nil {
		l.direct.errors[errorCode(err)]++
		return
	}
	if !measured {
		return
	}
	_ = l.direct.latency.RecordValue(micros(latency))
	if ttfc > 0 {
		_ = l.direct.ttfc.RecordValue(micros(ttfc))
	}
}

// finish counts what was never answered and returns the class reports,
// the direct reference, the error counts and the per-second series.
func (l *ledger) finish() (map[string]*ClassReport, *DirectReport, map[string]int, map[string]*ClassSeries) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, e := range l.entries {
		if e.accepted && e.terminals == 0 {
			e.class.lost++
			e.conv.lost++
		}
		if !e.measured {
			continue
		}
		e.class.resends += e.resends
		if e.resends > 0 {
			e.class.retried++
		} else if e.final {
			e.class.succeededFirst++
		}
	}
	// A conversation belongs to the class of its entries; count affected
	// conversations per class.
	seen := map[*convState]bool{}
	worst := map[*classStats][]ConversationIssue{}
	for _, e := range l.entries {
		cs := e.conv
		if seen[cs] {
			continue
		}
		seen[cs] = true
		if cs.lost+cs.dups+cs.order > 0 {
			worst[e.class] = append(worst[e.class], ConversationIssue{ID: cs.id, Lost: cs.lost, Duplicates: cs.dups, OrderViolations: cs.order})
		}
		if cs.lost > 0 {
			e.class.convLost++
		}
		if cs.dups > 0 {
			e.class.convDups++
		}
		if cs.order > 0 {
			e.class.convOrder++
		}
		if cs.storedOrder > 0 {
			e.class.convStoredOrder++
		}
	}
	for cs := range seen {
		l.recordLimit(cs)
	}
	out := map[string]*ClassReport{}
	series := map[string]*ClassSeries{}
	for name, c := range l.classes {
		r := &ClassReport{
			Sent: c.sent, Measured: c.measured, Accepted: c.accepted, SendErrors: c.sendErrors,
			Answered: c.answered, Succeeded: c.succeeded, Failed: c.failed,
			Lost: c.lost, Duplicates: c.dups, OrderViolations: c.order,
			Conversations: c.convs, ConversationsWithLoss: c.convLost, ConversationsWithDuplicates: c.convDups,
			ConversationsWithOrderViolations: c.convOrder,
			Stored:                           c.stored, StoredOrderViolations: c.storedOrder, ConversationsWithStoredOrderViolations: c.convStoredOrder,
			LatencyMS: percentiles(c.e2e), TTFCMS: percentiles(c.ttfc), ModelMS: percentiles(c.model), OverheadMS: percentiles(c.overhead),
			OrderedLimitMS: percentiles(c.limit), OverLimitMS: percentiles(c.overLimit),
			SendLagMaxMS: ms(c.sendLagMax),
		}
		r.WorstConversations = worstOf(worst[c])
		r.Resends, r.Retried, r.SucceededFirstAttempt = c.resends, c.retried, c.succeededFirst
		if c.measured > 0 {
			r.SuccessRate = float64(c.succeeded) / float64(c.measured)
			r.SuccessRateFirstAttempt = float64(c.succeededFirst) / float64(c.measured)
		}
		if w := c.lastIntended.Sub(c.firstIntended); w > 0 {
			r.OfferedRate = float64(c.measured-1) / w.Seconds()
		}
		if w := c.lastAnswer.Sub(c.firstAnswer); w > 0 {
			r.AchievedRate = float64(c.answered-1) / w.Seconds()
		}
		out[name] = r
		series[name] = c.seriesOut()
	}
	d := &DirectReport{Sent: l.direct.sent, Errors: l.direct.errors, LatencyMS: percentiles(l.direct.latency), TTFCMS: percentiles(l.direct.ttfc)}
	errs := map[string]int{}
	for k, v := range l.errors {
		errs[k] = v
	}
	return out, d, errs, series
}

// recordLimit computes the ordered limit (limit.go) of a conversation's
// requests and records, for each measured successful one whose limit is
// known, the limit from its intended send time and its overhead over it.
func (l *ledger) recordLimit(cs *convState) {
	steps := make([]limitStep, len(cs.entries))
	for i, e := range cs.entries {
		steps[i] = limitStep{send: e.intended, skip: e.sendFailed || e.terminals == 0, model: e.modelTime,
			unknown: e.final && e.modelTime <= 0}
	}
	for i, done := range orderedLimit(steps) {
		e := cs.entries[i]
		if done.IsZero() || !e.final || !e.measured {
			continue
		}
		_ = e.class.limit.RecordValue(micros(done.Sub(e.intended)))
		_ = e.class.overLimit.RecordValue(micros(e.answeredAt.Sub(done)))
	}
}

// maxWorst is how many conversations a report names.
const maxWorst = 10

// worstOf returns the conversations with the most problems, at most
// maxWorst, worst first (ties by ID, so reports are stable).
func worstOf(cs []ConversationIssue) []ConversationIssue {
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i].Lost+cs[i].Duplicates+cs[i].OrderViolations, cs[j].Lost+cs[j].Duplicates+cs[j].OrderViolations
		if a != b {
			return a > b
		}
		return cs[i].ID < cs[j].ID
	})
	return cs[:min(len(cs), maxWorst)]
}

func (c *classStats) seriesOut() *ClassSeries {
	idx := make([]int, 0, len(c.series))
	for i := range c.series {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	s := &ClassSeries{}
	for _, i := range idx {
		b := c.series[i]
		t := float64(i)
		s.Sent = append(s.Sent, Point{t, float64(b.sent)})
		s.Answered = append(s.Answered, Point{t, float64(b.answered)})
		s.Errors = append(s.Errors, Point{t, float64(b.errors)})
		if b.e2e.TotalCount() > 0 {
			s.P50MS = append(s.P50MS, Point{t, float64(b.e2e.ValueAtQuantile(50)) / 1000})
			s.P99MS = append(s.P99MS, Point{t, float64(b.e2e.ValueAtQuantile(99)) / 1000})
			s.MaxMS = append(s.MaxMS, Point{t, float64(b.e2e.Max()) / 1000})
		}
	}
	return s
}

// badOutcomes classifies every bad input; dl says whether (and why) one
// reached the dead-letter topic.
func (l *ledger) badOutcomes(dl func(id string) (string, bool)) *MalformedReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.bad) == 0 {
		return nil
	}
	m := &MalformedReport{ByKind: map[string]map[string]int{}}
	for id, b := range l.bad {
		outcome := ""
		switch {
		case strings.HasPrefix(b.sendCode, "http_4"):
			outcome = OutcomeRejected + ":" + b.sendCode
		case b.sendCode != "":
			outcome = OutcomeSendFailed + ":" + b.sendCode
		case b.result != "" && b.result != "final":
			outcome = OutcomeErrorResult + ":" + b.result
		case b.result == "final":
			outcome = OutcomeAnswered
		}
		if outcome == "" || outcome == OutcomeAnswered {
			if dl != nil {
				if reason, ok := dl(id); ok {
					outcome = OutcomeDeadLettered + ":" + reason
				}
			}
		}
		if outcome == "" {
			outcome = OutcomeNone
		}
		if m.ByKind[b.kind] == nil {
			m.ByKind[b.kind] = map[string]int{}
		}
		m.ByKind[b.kind][outcome]++
		m.Sent++
		switch {
		case strings.HasPrefix(outcome, OutcomeRejected), strings.HasPrefix(outcome, OutcomeDeadLettered), strings.HasPrefix(outcome, OutcomeErrorResult):
			m.Handled++
		default:
			m.Unhandled++
		}
	}
	return m
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	f := func(v int64) float64 { return float64(v) / 1000 }
	if h.TotalCount() == 0 {
		return Percentiles{}
	}
	return Percentiles{Count: h.TotalCount(), P50: f(h.ValueAtQuantile(50)), P90: f(h.ValueAtQuantile(90)), P99: f(h.ValueAtQuantile(99)),
		P999: f(h.ValueAtQuantile(99.9)), Max: f(h.Max()), Mean: h.Mean() / 1000}
}

// resentCounts returns the refusals answered with a resend, by code.
func (l *ledger) resentCounts() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.resent) == 0 {
		return nil
	}
	out := make(map[string]int, len(l.resent))
	for k, v := range l.resent {
		out[k] = v
	}
	return out
}

// samples returns the measured requests of class for the recovery
// (recovery.go): intended send time since begin and, for a request whose
// first terminal answer was a final result, its end-to-end latency.
func (l *ledger) samples(class string) []sample {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []sample
	for _, e := range l.entries {
		if e.class.name != class || !e.measured {
			continue
		}
		s := sample{t: e.intended.Sub(l.begin)}
		if e.final && e.terminals > 0 {
			s.lat, s.ok = e.answeredAt.Sub(e.intended), true
		}
		out = append(out, s)
	}
	return out
}
