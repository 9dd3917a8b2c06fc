package loadtest

import (
	"errors"
	"testing"
	"time"
)

// step is one thing that happens to the ledger in a table test: a
// registration (with the Send's outcome) or an answer.
type step struct {
	reg    string // id to register on conv
	conv   string
	class  string
	late   bool  // the answer arrives before the Send returns
	err    error // Send's outcome
	answer *Answer
}

func ans(id string, kind AnswerKind) *Answer { return &Answer{ID: id, Kind: kind} }

func TestLedgerAccounting(t *testing.T) {
	type want struct {
		lost, dups, order, ok, failed, sendErrs, convLoss int
		errors                                            map[string]int
	}
	tests := []struct {
		name  string
		steps []step
		want  want
	}{
		{"answered in order", []step{
			{reg: "a", conv: "c"}, {reg: "b", conv: "c"}, {answer: ans("a", Final)}, {answer: ans("b", Final)},
		}, want{ok: 2}},
		{"a missing answer is lost, not out of order", []step{
			{reg: "a", conv: "c"}, {reg: "b", conv: "c"}, {answer: ans("b", Final)},
		}, want{lost: 1, ok: 1, convLoss: 1}},
		{"an earlier answer after a later one is out of order", []step{
			{reg: "a", conv: "c"}, {reg: "b", conv: "c"}, {answer: ans("b", Final)}, {answer: ans("a", Final)},
		}, want{order: 1, ok: 2}},
		{"a repeated answer is a duplicate, not out of order", []step{
			{reg: "a", conv: "c"}, {reg: "b", conv: "c"}, {answer: ans("a", Final)}, {answer: ans("b", Final)}, {answer: ans("a", Final)},
		}, want{dups: 1, ok: 2}},
		{"order is per conversation", []step{
			{reg: "a", conv: "c1"}, {reg: "b", conv: "c2"}, {answer: ans("b", Final)}, {answer: ans("a", Final)},
		}, want{ok: 2}},
		{"chunks are not terminal", []step{
			{reg: "a", conv: "c"}, {answer: ans("a", Chunk)}, {answer: ans("a", Chunk)},
		}, want{lost: 1, convLoss: 1}},
		{"error results count by code", []step{
			{reg: "a", conv: "c"}, {answer: &Answer{ID: "a", Kind: Failed, ErrorCode: "unknown_model"}},
		}, want{failed: 1, errors: map[string]int{"result_unknown_model": 1}}},
		{"a rejected send is an error, not lost", []step{
			{reg: "a", conv: "c", err: &SendError{Code: "http_503_unavailable"}},
		}, want{sendErrs: 1, errors: map[string]int{"http_503_unavailable": 1}}},
		{"an answer before the acknowledgement counts once", []step{
			{reg: "a", conv: "c", late: true}, {answer: ans("a", Final)}, {reg: "", conv: "c"},
		}, want{ok: 1}},
		{"answers to unknown requests are ignored", []step{
			{answer: ans("zzz", Final)},
		}, want{}},
		{"classes are counted apart", []step{
			{reg: "a", conv: "c", class: "batch"}, {reg: "b", conv: "d"},
		}, want{lost: 1, convLoss: 1}}, // interactive only: b
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			begin := time.Now().Add(-time.Minute)
			l := newLedger(begin, 0)
			entries := map[string]*entry{}
			var lateEntry *entry
			for _, s := range tc.steps {
				switch {
				case s.answer != nil:
					a := *s.answer
					a.At = time.Now()
					l.observe(a)
				case s.reg == "" && lateEntry != nil:
					l.sent(lateEntry, nil, time.Now())
				default:
					class := s.class
					if class == "" {
						class = "interactive"
					}
					e := l.register(class, s.conv, s.reg, time.Now().Add(-10*time.Millisecond))
					entries[s.reg] = e
					if s.late {
						lateEntry = e
						continue
					}
					l.sent(e, s.err, time.Now())
				}
			}
			classes, _, errs, _ := l.finish()
			c := classes["interactive"]
			if c == nil {
				c = &ClassReport{}
			}
			got := want{lost: c.Lost, dups: c.Duplicates, order: c.OrderViolations, ok: c.Succeeded, failed: c.Failed,
				sendErrs: c.SendErrors, convLoss: c.ConversationsWithLoss, errors: errs}
			if len(got.errors) == 0 {
				got.errors = nil
			}
			if got.lost != tc.want.lost || got.dups != tc.want.dups || got.order != tc.want.order || got.ok != tc.want.ok ||
				got.failed != tc.want.failed || got.sendErrs != tc.want.sendErrs || got.convLoss != tc.want.convLoss ||
				len(got.errors) != len(tc.want.errors) {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
			for k, v := range tc.want.errors {
				if got.errors[k] != v {
					t.Errorf("errors[%s] = %d, want %d", k, got.errors[k], v)
				}
			}
			if n := c.Lost + c.Duplicates + c.OrderViolations; n > 0 && (len(c.WorstConversations) == 0 || c.WorstConversations[0].Lost+c.WorstConversations[0].Duplicates+c.WorstConversations[0].OrderViolations == 0) {
				t.Errorf("problems %d but worst conversations %+v", n, c.WorstConversations)
			}
			if l.outstanding() < 0 {
				t.Errorf("outstanding %d below zero", l.outstanding())
			}
		})
	}
}

func TestLedgerWarmupAndLatency(t *testing.T) {
	begin := time.Now().Add(-10 * time.Second)
	l := newLedger(begin, 5*time.Second)
	early := l.register("interactive", "c", "early", begin.Add(time.Second))
	l.sent(early, nil, begin.Add(time.Second))
	late := l.register("interactive", "c", "late", begin.Add(6*time.Second))
	l.sent(late, nil, begin.Add(6*time.Second))
	l.observe(Answer{ID: "early", Kind: Final, At: begin.Add(2 * time.Second)})
	l.observe(Answer{ID: "late", Kind: Chunk, At: begin.Add(6*time.Second + 50*time.Millisecond)})
	l.observe(Answer{ID: "late", Kind: Final, At: begin.Add(6*time.Second + 200*time.Millisecond), ModelTime: 150 * time.Millisecond})
	classes, _, _, series := l.finish()
	c := classes["interactive"]
	if c.Sent != 2 || c.Measured != 1 || c.Answered != 1 {
		t.Fatalf("sent %d measured %d answered %d, want 2, 1, 1 (the first is warmup)", c.Sent, c.Measured, c.Answered)
	}
	near := func(got, want float64) bool { return got > want*0.99 && got < want*1.01 }
	if !near(c.LatencyMS.P50, 200) || !near(c.TTFCMS.P50, 50) || !near(c.ModelMS.P50, 150) || !near(c.OverheadMS.P50, 50) {
		t.Errorf("latency %v ttfc %v model %v overhead %v, want 200, 50, 150, 50 ms", c.LatencyMS.P50, c.TTFCMS.P50, c.ModelMS.P50, c.OverheadMS.P50)
	}
	if c.SuccessRate != 1 {
		t.Errorf("success rate %v, want 1", c.SuccessRate)
	}
	s := series["interactive"]
	sent := map[float64]float64{}
	for _, p := range s.Sent {
		sent[p.T] = p.V
	}
	answered := map[float64]float64{}
	for _, p := range s.Answered {
		answered[p.T] = p.V
	}
	if sent[1] != 1 || sent[6] != 1 || sent[2] != 0 || answered[2] != 1 || answered[6] != 1 {
		t.Errorf("sent %v answered %v, want sent at 1s and 6s, answered at 2s and 6s", s.Sent, s.Answered)
	}
}

func TestBadOutcomes(t *testing.T) {
	l := newLedger(time.Now(), 0)
	for id, kind := range map[string]string{"r": BadJSON, "d": BadGarbage, "e": BadUnknownModel, "a": BadUTF8, "n": BadNoKey, "f": BadHuge} {
		l.registerBad(id, kind)
	}
	l.badSent("r", &SendError{Code: "http_400_invalid_json"})
	l.badSent("f", &SendError{Code: "connection_reset"})
	l.observe(Answer{ID: "e", Kind: Failed, ErrorCode: "unknown_model"})
	l.observe(Answer{ID: "a", Kind: Final})
	m := l.badOutcomes(func(id string) (string, bool) {
		if id == "d" {
			return "decode_error", true
		}
		return "", false
	})
	want := map[string]string{
		BadJSON: "rejected:http_400_invalid_json", BadGarbage: "dead_lettered:decode_error", BadUnknownModel: "error_result:unknown_model",
		BadUTF8: OutcomeAnswered, BadNoKey: OutcomeNone, BadHuge: "send_failed:connection_reset",
	}
	for kind, outcome := range want {
		if m.ByKind[kind][outcome] != 1 {
			t.Errorf("%s: outcomes %v, want %s", kind, m.ByKind[kind], outcome)
		}
	}
	if m.Sent != 6 || m.Handled != 3 || m.Unhandled != 3 {
		t.Errorf("sent %d handled %d unhandled %d, want 6, 3, 3", m.Sent, m.Handled, m.Unhandled)
	}
}

func TestWorstOf(t *testing.T) {
	var cs []ConversationIssue
	for i := range 15 {
		cs = append(cs, ConversationIssue{ID: string(rune('a' + i)), Lost: i % 4, OrderViolations: i / 10})
	}
	got := worstOf(cs)
	if len(got) != maxWorst {
		t.Fatalf("%d conversations, want %d", len(got), maxWorst)
	}
	// Totals are i%4 + i/10: 4 for "l" (11), then 3 for "d", "h", "k"
	// and "o" (3, 7, 10, 14), ties by ID.
	if got[0].ID != "l" || got[1].ID != "d" || got[2].ID != "h" || got[3].ID != "k" || got[4].ID != "o" {
		t.Errorf("order %+v", got[:4])
	}
}

func TestErrorCode(t *testing.T) {
	if got := errorCode(&SendError{Code: "x"}); got != "x" {
		t.Errorf("got %q", got)
	}
	if got := errorCode(errors.New("boom")); got != "other" {
		t.Errorf("got %q", got)
	}
}

func TestConfigValidate(t *testing.T) {
	drv, rd := newHTTPDriver("http://127.0.0.1:1", "", time.Second), newSSEReader("http://127.0.0.1:1", "")
	tests := []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"open loop", Config{Driver: drv, Reader: rd, Duration: time.Second, Loads: []Load{{Rate: 10}}}, true},
		{"closed loop", Config{Driver: drv, Reader: rd, Duration: time.Second, Loads: []Load{{Users: 10}}}, true},
		{"no driver", Config{Reader: rd, Duration: time.Second, Loads: []Load{{Rate: 10}}}, false},
		{"no loads", Config{Driver: drv, Reader: rd, Duration: time.Second}, false},
		{"no duration", Config{Driver: drv, Reader: rd, Loads: []Load{{Rate: 10}}}, false},
		{"rate and users", Config{Driver: drv, Reader: rd, Duration: time.Second, Loads: []Load{{Rate: 10, Users: 1}}}, false},
		{"bad share over 1", Config{Driver: drv, Reader: rd, Duration: time.Second, Loads: []Load{{Rate: 10, BadShare: 2}}}, false},
	}
	for _, tc := range tests {
		if err := tc.cfg.Validate(); (err == nil) != tc.ok {
			t.Errorf("%s: Validate() = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	if err := (StackConfig{Bin: t.TempDir(), Dir: t.TempDir()}).Validate(); err == nil {
		t.Error("a stack without binaries validated")
	}
}

// TestLedgerResends: a request resent after refusals is one request: one
// answer is a success (after retries, not before), not a duplicate or a
// send error; two answers are a real duplicate; a request refused after
// its resends is one send error; an answer that comes while a resend
// waits (the refused attempt was stored after all) is its answer.
func TestLedgerResends(t *testing.T) {
	begin := time.Now().Add(-time.Minute)
	l := newLedger(begin, 0)
	refused := &SendError{Code: "http_503_unavailable", Status: 503}
	at := begin.Add(time.Second)
	reg := func(id string) *entry { return l.register(classInteractive, "c-"+id, id, at) }

	a := reg("a") // refused twice, accepted, answered once
	l.resend(a, refused)
	l.resend(a, refused)
	l.sent(a, nil, time.Now())
	l.observe(Answer{ID: "a", Kind: Final, At: at.Add(3 * time.Second)})

	b := reg("b") // accepted at once, answered twice
	l.sent(b, nil, time.Now())
	l.observe(Answer{ID: "b", Kind: Final, At: at.Add(time.Second)})
	l.observe(Answer{ID: "b", Kind: Final, At: at.Add(time.Second)})

	c := reg("c") // refused after its resends
	l.resend(c, refused)
	l.sent(c, refused, time.Now())

	d := reg("d") // the connection broke, but ingress had it: answered while the resend waited
	l.observe(Answer{ID: "d", Kind: Final, At: at.Add(time.Second)})
	l.resend(d, &SendError{Code: "connection_reset"})
	l.sent(d, nil, time.Now())

	classes, _, errs, _ := l.finish()
	got := classes[classInteractive]
	if got.Sent != 4 || got.Accepted != 3 || got.SendErrors != 1 || got.Succeeded != 3 || got.Lost != 0 || got.Duplicates != 1 {
		t.Errorf("sent %d accepted %d send errors %d ok %d lost %d dup %d: want 4, 3, 1, 3, 0, 1",
			got.Sent, got.Accepted, got.SendErrors, got.Succeeded, got.Lost, got.Duplicates)
	}
	if got.Resends != 4 || got.Retried != 3 || got.SucceededFirstAttempt != 1 || got.SuccessRateFirstAttempt != 0.25 || got.SuccessRate != 0.75 {
		t.Errorf("resends %d retried %d first-attempt ok %d (%v) success %v: want 4, 3, 1 (0.25), 0.75",
			got.Resends, got.Retried, got.SucceededFirstAttempt, got.SuccessRateFirstAttempt, got.SuccessRate)
	}
	if len(errs) != 1 || errs["http_503_unavailable"] != 1 {
		t.Errorf("errors %v: want the one final refusal", errs)
	}
	if r := l.resentCounts(); r["http_503_unavailable"] != 3 || r["connection_reset"] != 1 {
		t.Errorf("resent after %v: want 3 refusals and 1 reset", r)
	}
	if got.LatencyMS.Max < 2990 {
		t.Errorf("latency max %v ms: want the resent request's 3 s from its intended send", got.LatencyMS.Max)
	}
	if n := l.outstanding(); n != 0 {
		t.Errorf("outstanding %d, want 0", n)
	}
}
