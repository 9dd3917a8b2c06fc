// Package loadtest drives load through Switchboard and accounts for every
// request. A run offers load through a [Driver] (ingress HTTP, or records
// straight to the requests topics) and reads answers through a [Reader]
// (egress SSE, or the results topic), in open loop (a rate: every request
// has an intended send time and latency counts from it, so a stalled
// pipeline cannot hide its delay) or closed loop (users who wait for each
// answer and think before the next). It measures, in the same run, direct
// calls to the model simulator as the reference for pipeline overhead,
// samples consumer lag (kadm) and the CPU and memory of the stack's
// processes (/proc), can inject faults (kill -9 and restart) and bad
// inputs, and reports offered and achieved throughput, latency percentiles
// (HdrHistogram), time to first chunk, the overhead over the ordered limit
// (the earliest each answer could come in any system that keeps
// conversation order, from the run's own send times and model times;
// limit.go), errors by code, and lost, duplicated
// and out-of-order answers per conversation, as a terminal summary, JSON,
// and an HTML page that opens offline. Scenarios (scenario.go) put runs
// together; Stack (stack.go) starts a local stack of the real binaries.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// Load is one stream of requests of a run. Open loop when Rate is set,
// closed loop when Users is.
type Load struct {
	// Class names the load in the report, e.g. "interactive", "batch".
	// Default: the lane.
	Class string
	// Lane is "interactive" (default) or "batch".
	Lane string
	// Rate is the open-loop offered load in requests per second.
	Rate float64
	// Conversations share an open-loop load round-robin. Default 1000.
	Conversations int
	// Users are closed-loop users, each its own conversation.
	Users int
	// Ramp spreads the users' starts evenly over this time (0: all at once).
	Ramp time.Duration
	// Think is a user's mean pause after an answer before the next
	// request (drawn uniformly from [Think/2, 3·Think/2]).
	Think time.Duration
	// Start delays the load from the start of the run; Duration is how
	// long it sends (default: the run's Duration).
	Start, Duration time.Duration
	// BadShare is the fraction, 0..1, of requests replaced by bad inputs
	// (see malformed.go).
	BadShare float64
	// PerCall > 1 sends an open-loop load in calls of PerCall messages (a
	// batch, or a burst on one stream; see CallSender), ConvsPerCall
	// conversations interleaved in each call (default 2), through the
	// CallSender Config.Callers[Via] (Via empty: the run's Driver).
	PerCall, ConvsPerCall int
	Via                   string
}

// Fault is an action taken At into the run, e.g. kill -9 a process.
type Fault struct {
	At   time.Duration
	Name string
	Do   func(ctx context.Context) error
}

// Config describes one run.
type Config struct {
	// Scenario, Description, Label and Command go into the report.
	Scenario, Description, Label, Command string
	// Settings are the scenario's parameters, for the report.
	Settings map[string]string
	// Driver sends requests; Reader reads answers. Required.
	Driver Driver
	Reader Reader
	// Loads run at once. At least one.
	Loads []Load
	// Duration is how long load is sent. Required.
	Duration time.Duration
	// Warmup excludes requests meant for the first Warmup from the
	// figures (they are still accounted for loss, duplicates and order).
	Warmup time.Duration
	// Drain is how long to wait for the last answers. Default 30s.
	Drain time.Duration
	// AnswerTimeout is how long a closed-loop user waits for an answer
	// before sending the next request. Default 30s.
	AnswerTimeout time.Duration
	// Model, Stream and MaxTokens shape every request. Defaults "sim",
	// false, 16.
	Model     string
	Stream    bool
	MaxTokens int32
	// ModelURL is the model simulator's base URL for the direct reference
	// calls; empty skips them. DirectRate is their rate (default 5 % of
	// the open-loop rate, between 5/s and 50/s).
	ModelURL   string
	DirectRate float64
	// KafkaOpts reach the cluster for lag sampling and dead letters;
	// Group is the router's consumer group (default switchboard-router).
	KafkaOpts []kgo.Opt
	Topics    Topics
	Group     string
	// BadKafka, when set, carries the Kafka kinds of bad input (garbage
	// records straight to the requests topic) in malformed loads.
	BadKafka RawSender
	// MetricsURLs are the services' admin base URLs by process name, whose
	// /metrics give their goroutine counts; nil samples none.
	MetricsURLs map[string]string
	// ProfileDir, when set, receives each service's CPU profile of the
	// measured window (from the warm-up's end, at most 30 s) and its heap
	// profile after it, fetched from MetricsURLs' /debug/pprof/ (the
	// services run with --pprof).
	ProfileDir string
	// Processes returns the PIDs to sample, by name; nil samples none.
	Processes func() map[string]int
	// Faults happen during the run.
	Faults []Fault
	// Retry says how requests refused for a passing reason are resent
	// (retry.go); the zero value sends each request once.
	Retry Retry
	// Callers are the CallSenders of calls loads, by Load.Via.
	Callers map[string]CallSender
	// CheckStoredOrder reads the requests topics (KafkaOpts, Topics) during
	// the run and counts, per conversation, requests stored out of the
	// order they were sent in.
	CheckStoredOrder bool
	// AllowDuplicates says duplicates are expected (at-least-once delivery
	// after a crash) and do not fail a check.
	AllowDuplicates bool
	// Progress receives the live progress line (nil: none); ProgressTTY
	// redraws one line instead of printing one every 5 seconds.
	Progress    io.Writer
	ProgressTTY bool
	// RunID prefixes request and conversation IDs. Default: a random one.
	RunID  string
	Logger *slog.Logger
}

// Validate reports whether c, with defaults applied, describes a run.
func (c Config) Validate() error { return c.defaults() }

// defaults fills c's zero fields and checks it.
func (c *Config) defaults() error {
	if c.Driver == nil || c.Reader == nil {
		return errors.New("loadtest: a driver and a reader are required")
	}
	if len(c.Loads) == 0 || c.Duration <= 0 {
		return errors.New("loadtest: at least one load and a positive duration are required")
	}
	for i := range c.Loads {
		l := &c.Loads[i]
		if (l.Rate > 0) == (l.Users > 0) {
			return fmt.Errorf("loadtest: load %d: set exactly one of rate and users", i)
		}
		if l.Lane == "" {
			l.Lane = envelope.LaneInteractive
		}
		if l.Class == "" {
			l.Class = l.Lane
		}
		if l.Conversations == 0 {
			l.Conversations = 1000
		}
		if l.Duration == 0 {
			l.Duration = c.Duration - l.Start
		}
		if l.BadShare < 0 || l.BadShare > 1 {
			return fmt.Errorf("loadtest: load %d: bad share must be in [0, 1]", i)
		}
		if err := c.callsDefaults(i, l); err != nil {
			return err
		}
	}
	if c.Drain == 0 {
		c.Drain = 30 * time.Second
	}
	if c.AnswerTimeout == 0 {
		c.AnswerTimeout = 30 * time.Second
	}
	if c.Model == "" {
		c.Model = "sim"
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = 16
	}
	if c.Group == "" {
		c.Group = "switchboard-router"
	}
	if c.Retry.Max < 0 {
		return errors.New("loadtest: retries must not be negative")
	}
	c.Retry.defaults()
	if c.DirectRate == 0 {
		open := 0.0
		for _, l := range c.Loads {
			open += l.Rate
		}
		c.DirectRate = min(50, max(5, open*0.05))
	}
	if c.RunID == "" {
		c.RunID = fmt.Sprintf("lt%x", rand.Uint32())
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// run is the state of one Run.
type run struct {
	cfg      *Config
	led      *ledger
	begin    time.Time
	convMu   sync.Map // conversation -> *sync.Mutex: a conversation's sends are serialised
	events   []Event
	restarts []restart // faults that ended with their restart; evMu guards it
	evMu     sync.Mutex
	// goroutines and loadAvg are the 5-second samples (sampleSlow).
	goroutines *goroutineWatch
	slowMu     sync.Mutex
	loadAvg    []Point
}

func (r *run) convLock(conv string) *sync.Mutex {
	m, _ := r.convMu.LoadOrStore(conv, &sync.Mutex{})
	return m.(*sync.Mutex)
}

func (r *run) event(what string) {
	r.evMu.Lock()
	defer r.evMu.Unlock()
	r.events = append(r.events, Event{T: time.Since(r.begin).Seconds(), What: what})
}

// Run executes the run described by cfg and returns its report. It
// returns an error only when the run could not take place (a reader that
// cannot open, ctx cancelled); what goes wrong during the run is in the
// report.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	r := &run{cfg: &cfg, goroutines: newGoroutineWatch(cfg.MetricsURLs)}
	started := time.Now()

	// The dead-letter reader starts before anything is sent.
	var dls *deadLetters
	if cfg.KafkaOpts != nil && cfg.Topics.DeadLetter != "" && hasBad(cfg.Loads) {
		var err error
		if dls, err = startDeadLetters(ctx, cfg.KafkaOpts, cfg.Topics.DeadLetter); err != nil {
			return nil, err
		}
		defer dls.close()
	}
	// Answers can arrive before begin is known only for conversations
	// watched below; the ledger exists from here on.
	r.led = newLedger(time.Now(), cfg.Warmup)
	if cfg.CheckStoredOrder {
		sw, err := startStoredWatch(ctx, cfg.KafkaOpts, []string{cfg.Topics.Interactive, cfg.Topics.Batch}, r.led.observeStored)
		if err != nil {
			return nil, err
		}
		defer sw.close()
	}
	if err := r.openReader(ctx); err != nil {
		return nil, err
	}
	defer cfg.Reader.Close()

	r.begin = time.Now()
	r.led.mu.Lock()
	r.led.begin = r.begin
	r.led.mu.Unlock()
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()

	procs := newProcWatch(cfg.Processes, r.begin)
	var lag *lagWatch
	if cfg.KafkaOpts != nil {
		var err error
		if lag, err = newLagWatch(cfg.KafkaOpts, cfg.Group, r.begin); err != nil {
			return nil, err
		}
		defer lag.close()
	}
	stopSampling := make(chan struct{})
	samplers := r.startSamplers(runCtx, stopSampling, procs, lag)
	faults := r.startFaults(runCtx)
	prof := r.startProfiles(runCtx)
	r.send(runCtx)
	sendEnd := time.Now()
	if ctx.Err() != nil {
		cancel()
		close(stopSampling)
		samplers.Wait()
		faults.Wait()
		prof.wait()
		return nil, ctx.Err()
	}
	r.drain(ctx)
	faults.Wait()
	close(stopSampling)
	samplers.Wait()
	cfg.Reader.Close()
	rep := r.report(started, sendEnd, procs, lag, dls)
	rep.Profiles = prof.wait()
	return rep, nil
}

// profiling is a run's profile collection (Config.ProfileDir).
type profiling struct {
	done  chan struct{}
	files []string
}

// wait returns the profiles written, once their collection ended.
func (p *profiling) wait() []string {
	if p == nil {
		return nil
	}
	<-p.done
	return p.files
}

// startProfiles collects the services' profiles from the warm-up's end,
// when Config.ProfileDir is set.
func (r *run) startProfiles(ctx context.Context) *profiling {
	if r.cfg.ProfileDir == "" || len(r.cfg.MetricsURLs) == 0 {
		return nil
	}
	p := &profiling{done: make(chan struct{})}
	go func() {
		defer close(p.done)
		t := time.NewTimer(time.Until(r.begin.Add(r.cfg.Warmup)))
		defer t.Stop()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		files, err := profiles(ctx, r.cfg.ProfileDir, r.cfg.Scenario, r.cfg.MetricsURLs, r.cfg.Duration-r.cfg.Warmup)
		if err != nil && r.cfg.Progress != nil {
			fmt.Fprintln(r.cfg.Progress, err)
		}
		p.files = files
	}()
	return p
}

// openReader opens the answers' reader into the ledger, and watches the
// open-loop conversations before the clock starts, so the cost of opening
// streams is not charged to the first requests.
func (r *run) openReader(ctx context.Context) error {
	if err := r.cfg.Reader.Open(ctx, r.led.observe); err != nil {
		return fmt.Errorf("loadtest: open %s reader: %w", r.cfg.Reader.Name(), err)
	}
	for li, l := range r.cfg.Loads {
		if l.Rate == 0 {
			continue
		}
		if err := r.watchAll(ctx, li, l); err != nil {
			r.cfg.Reader.Close()
			return err
		}
	}
	return nil
}

// startSamplers starts sampling processes and lag and, with a model URL,
// the direct reference calls, until stop is closed; wait on the result.
func (r *run) startSamplers(ctx context.Context, stop <-chan struct{}, procs *procWatch, lag *lagWatch) *sync.WaitGroup {
	var samplers sync.WaitGroup
	samplers.Go(func() { r.sample(ctx, stop, procs, lag) })
	if r.cfg.ModelURL != "" {
		samplers.Go(func() { r.direct(ctx, stop) })
	}
	return &samplers
}

// startFaults runs each fault at its time after begin, unless ctx ends
// first; wait on the result.
func (r *run) startFaults(ctx context.Context) *sync.WaitGroup {
	var faults sync.WaitGroup
	for _, f := range r.cfg.Faults {
		faults.Go(func() {
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Until(r.begin.Add(f.At))):
			}
			r.event(f.Name)
			if err := f.Do(ctx); err != nil {
				r.event(f.Name + " failed: " + err.Error())
				return
			}
			r.evMu.Lock()
			r.restarts = append(r.restarts, restart{name: f.Name, at: f.At, end: time.Since(r.begin)})
			r.evMu.Unlock()
			r.event("done: " + f.Name)
		})
	}
	return &faults
}

// send runs every load (open or closed loop) and returns when all have
// stopped sending.
func (r *run) send(ctx context.Context) {
	var loads sync.WaitGroup // owns every sending goroutine
	for li, l := range r.cfg.Loads {
		loads.Add(1)
		go func() {
			defer loads.Done()
			if l.Rate > 0 {
				r.openLoop(ctx, li, l, &loads)
			} else {
				r.closedLoop(ctx, li, l, &loads)
			}
		}()
	}
	loads.Wait()
}

// drain waits until every accepted request is answered or Drain passes.
func (r *run) drain(ctx context.Context) {
	deadline := time.Now().Add(r.cfg.Drain)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if r.led.outstanding() == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// report builds the run's report from the ledger and the samplers.
func (r *run) report(started, sendEnd time.Time, procs *procWatch, lag *lagWatch, dls *deadLetters) *Report {
	cfg := r.cfg
	rep := &Report{
		Scenario: cfg.Scenario, Description: cfg.Description, Label: cfg.Label, Command: cfg.Command,
		StartedAt: started.UTC(), Driver: cfg.Driver.Name(), Reader: cfg.Reader.Name(), Settings: cfg.Settings,
		DurationS: cfg.Duration.Seconds(), WarmupS: cfg.Warmup.Seconds(), Events: r.events,
	}
	classes, direct, errs, series := r.led.finish()
	rep.Classes, rep.Errors, rep.Resent = classes, errs, r.led.resentCounts()
	rep.Retries = cfg.Retry.Max
	if cfg.Retry.Max > 0 {
		rep.RetryBudgetS = cfg.Retry.Budget.Seconds()
	}
	rep.Series.Classes = series
	if cfg.ModelURL != "" {
		rep.Direct = direct
	}
	for _, l := range cfg.Loads {
		c := rep.Classes[l.Class]
		if c == nil {
			continue
		}
		c.Lane, c.Mode = l.Lane, "open"
		if l.Users > 0 {
			c.Mode, c.Users = "closed", l.Users
		}
		if rep.Direct != nil && rep.Direct.LatencyMS.Count > 0 && c.LatencyMS.Count > 0 {
			d := c.LatencyMS.minus(rep.Direct.LatencyMS)
			c.OverheadVsDirectMS = &d
		}
	}
	measured := 0
	for _, c := range rep.Classes {
		measured += c.Measured
	}
	rep.Processes, rep.Series.CPU, rep.Series.RSSMB = procs.report(cfg.Warmup.Seconds(), sendEnd.Sub(r.begin).Seconds(), measured)
	if lag != nil {
		rep.Series.Lag = lag.out()
	}
	if r.goroutines != nil {
		rep.Series.Goroutines = r.goroutines.out()
	}
	r.slowMu.Lock()
	rep.Series.LoadAverage = slices.Clone(r.loadAvg)
	r.slowMu.Unlock()
	if sr, ok := cfg.Reader.(interface{ Reconnects() int }); ok { // the stream readers
		rep.SSEReconnects = sr.Reconnects()
	}
	var dl func(string) (string, bool)
	if dls != nil {
		dl = dls.reason
	}
	rep.Malformed = r.led.badOutcomes(dl)
	rep.Checks = baseChecks(rep, cfg.AllowDuplicates)
	if rec := r.recovery(sendEnd); rec != nil {
		rep.Recovery = rec
		rep.Checks = append(rep.Checks, recoveryCheck(rec))
	}
	if cfg.CheckStoredOrder {
		rep.Checks = append(rep.Checks, storedChecks(rep)...)
	}
	return rep
}

// recovery computes the recovery after each fault's restart for the
// interactive class (or the first class of an open-loop load).
func (r *run) recovery(sendEnd time.Time) *RecoveryReport {
	r.evMu.Lock()
	restarts := slices.Clone(r.restarts)
	r.evMu.Unlock()
	if len(r.cfg.Faults) == 0 || len(restarts) == 0 {
		return nil
	}
	class := ""
	for _, l := range r.cfg.Loads {
		if l.Rate > 0 && (class == "" || l.Class == classInteractive) {
			class = l.Class
		}
	}
	if class == "" {
		return nil
	}
	var at []time.Duration
	for _, f := range r.cfg.Faults {
		at = append(at, f.At)
	}
	rec := recovery(r.led.samples(class), r.cfg.Warmup, at, restarts, sendEnd.Sub(r.begin))
	if rec != nil {
		rec.Class = class
	}
	return rec
}

func hasBad(loads []Load) bool {
	for _, l := range loads {
		if l.BadShare > 0 {
			return true
		}
	}
	return false
}

// convID names conversation i of load li.
func (r *run) convID(li, i int) string { return fmt.Sprintf("%s-l%d-c%d", r.cfg.RunID, li, i) }

// watchAll watches an open-loop load's conversations, a few at a time.
func (r *run) watchAll(ctx context.Context, li int, l Load) error {
	sem := make(chan struct{}, 64)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for i := range l.Conversations {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			if err := r.cfg.Reader.Watch(wctx, r.convID(li, i)); err != nil {
				mu.Lock()
				first = cmpOr(first, fmt.Errorf("loadtest: watch conversation: %w", err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func cmpOr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// openLoop sends l's requests at their intended times, each on its own
// goroutine (owned by wg) so that a slow answer never delays the next
// send.
func (r *run) openLoop(ctx context.Context, li int, l Load, wg *sync.WaitGroup) {
	if l.PerCall > 1 {
		r.openLoopCalls(ctx, li, l, r.cfg.caller(l), wg)
		return
	}
	interval := time.Duration(float64(time.Second) / l.Rate)
	total := int(l.Rate * l.Duration.Seconds())
	start := r.begin.Add(l.Start)
	rng := rand.New(rand.NewPCG(uint64(li), 42))
	picker := r.badPicker()
	for i := range total {
		intended := start.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
		}
		conv := r.convID(li, i%l.Conversations)
		bad := l.BadShare > 0 && rng.Float64() < l.BadShare
		id := fmt.Sprintf("%s-l%d-%d", r.cfg.RunID, li, i)
		var kind string
		var sender RawSender
		if bad {
			kind, sender = picker()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu := r.convLock(conv)
			mu.Lock()
			defer mu.Unlock()
			if sender != nil {
				r.sendBad(ctx, conv, id, kind, sender)
				return
			}
			e := r.led.register(l.Class, conv, id, intended)
			_ = r.sendOne(ctx, e, r.message(id, conv, l, i)) // the ledger has the outcome
		}()
	}
}

// badPicker returns a function choosing the next bad input's kind, named
// "<entry point>/<kind>" (e.g. "http/invalid_json"), and the sender that
// carries it: the driver's kinds and, when BadKafka is set, Kafka's,
// alternately.
func (r *run) badPicker() func() (string, RawSender) {
	var senders []RawSender
	var pickers []*badPicker
	var via []string
	if rs, ok := r.cfg.Driver.(RawSender); ok {
		kinds := HTTPBadKinds
		if r.cfg.Driver.Name() == nameKafka {
			kinds = KafkaBadKinds
		}
		senders, pickers, via = append(senders, rs), append(pickers, &badPicker{kinds: kinds}), append(via, r.cfg.Driver.Name())
	}
	if r.cfg.BadKafka != nil && r.cfg.Driver.Name() != nameKafka {
		senders, pickers, via = append(senders, r.cfg.BadKafka), append(pickers, &badPicker{kinds: KafkaBadKinds}), append(via, nameKafka)
	}
	n := 0
	return func() (string, RawSender) {
		if len(senders) == 0 {
			return "", nil
		}
		i := n % len(senders)
		n++
		return via[i] + "/" + pickers[i].next(), senders[i]
	}
}

func (r *run) sendBad(ctx context.Context, conv, id, kind string, s RawSender) {
	r.led.registerBad(id, kind)
	_, bare, _ := strings.Cut(kind, "/")
	r.led.badSent(id, s.SendRaw(ctx, conv, Bad{ID: id, Kind: bare, Model: r.cfg.Model}))
}

// message is request id of conversation conv. When the run resends
// (Config.Retry), its Idempotency-Key is its ID, unique in the run, so
// that a resend is the same request, as a client that retries must send
// one; a run that does not resend sends none, so that its figures compare
// with runs made before retries existed (a key costs ingress a lookup).
func (r *run) message(id, conv string, l Load, i int) Message {
	m := Message{ID: id, Conversation: conv, Lane: l.Lane, Model: r.cfg.Model, Stream: r.cfg.Stream, MaxTokens: r.cfg.MaxTokens,
		Content: fmt.Sprintf("load test message %d of %s", i, conv)}
	if r.cfg.Retry.Max > 0 {
		m.IdempotencyKey = id
	}
	return m
}

// sendOne sends the request of entry e, resending it as Config.Retry
// allows, and records the outcome in the ledger.
func (r *run) sendOne(ctx context.Context, e *entry, m Message) error {
	err := r.cfg.Retry.send(ctx, e.intended, func() error { return r.cfg.Driver.Send(ctx, m) },
		func(refused error) { r.led.resend(e, refused) })
	r.led.sent(e, err, time.Now())
	return err
}

// closedLoop runs l's users: each watches its conversation, then sends,
// waits for the answer (up to AnswerTimeout), thinks, and sends again until
// the load's time is up. A request's intended time is when its user meant
// to send it, so time spent opening a stream or waiting to send counts.
func (r *run) closedLoop(ctx context.Context, li int, l Load, wg *sync.WaitGroup) {
	end := r.begin.Add(l.Start + l.Duration)
	for u := range l.Users {
		startAt := r.begin.Add(l.Start)
		if l.Users > 1 {
			startAt = startAt.Add(time.Duration(float64(l.Ramp) * float64(u) / float64(l.Users)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(li)<<32|uint64(u), 7))
			conv := r.convID(li, u)
			if !sleepUntil(ctx, startAt) {
				return
			}
			wctx, cancel := context.WithTimeout(ctx, r.cfg.AnswerTimeout)
			err := r.cfg.Reader.Watch(wctx, conv)
			cancel()
			if err != nil {
				r.led.mu.Lock()
				r.led.errors["watch_"+errorCode(err)]++
				r.led.mu.Unlock()
				return
			}
			picker := r.badPicker()
			intended := startAt
			for i := 0; intended.Before(end); i++ {
				if !sleepUntil(ctx, intended) {
					return
				}
				id := fmt.Sprintf("%s-l%d-u%d-%d", r.cfg.RunID, li, u, i)
				if l.BadShare > 0 && rng.Float64() < l.BadShare {
					if kind, s := picker(); s != nil {
						r.sendBad(ctx, conv, id, kind, s)
						intended = time.Now().Add(think(rng, l.Think))
						continue
					}
				}
				e := r.led.register(l.Class, conv, id, intended)
				if err := r.sendOne(ctx, e, r.message(id, conv, l, i)); err == nil {
					select {
					case <-e.done:
					case <-time.After(time.Until(intended.Add(r.cfg.AnswerTimeout))):
					case <-ctx.Done():
						return
					}
				}
				intended = time.Now().Add(think(rng, l.Think))
			}
		}()
	}
}

func think(rng *rand.Rand, mean time.Duration) time.Duration {
	if mean <= 0 {
		return 0
	}
	return mean/2 + time.Duration(rng.Int64N(int64(mean)+1))
}

func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

// sample takes the process and lag samples and prints progress every
// second until stop.
func (r *run) sample(ctx context.Context, stop <-chan struct{}, procs *procWatch, lag *lagWatch) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	lastPrint, lastSlow := time.Time{}, time.Time{}
	for {
		select {
		case <-stop:
			if r.cfg.Progress != nil && r.cfg.ProgressTTY {
				fmt.Fprintln(r.cfg.Progress)
			}
			return
		case <-ctx.Done():
			return
		case now := <-tick.C:
			procs.sample(now)
			if lag != nil {
				lag.sample(ctx, now)
			}
			if now.Sub(lastSlow) >= 5*time.Second {
				lastSlow = now
				r.sampleSlow(ctx, now)
			}
			if r.cfg.Progress == nil {
				continue
			}
			line := r.progressLine(now, lag)
			if r.cfg.ProgressTTY {
				fmt.Fprintf(r.cfg.Progress, "\r\033[K%s", line)
			} else if now.Sub(lastPrint) >= 5*time.Second {
				fmt.Fprintln(r.cfg.Progress, line)
				lastPrint = now
			}
		}
	}
}

// sampleSlow takes the 5-second samples: goroutines and load average.
func (r *run) sampleSlow(ctx context.Context, now time.Time) {
	t := now.Sub(r.begin).Seconds()
	if r.goroutines != nil {
		r.goroutines.sample(ctx, t)
	}
	if v, ok := loadAverage(); ok {
		r.slowMu.Lock()
		r.loadAvg = append(r.loadAvg, Point{T: t, V: v})
		r.slowMu.Unlock()
	}
}

func (r *run) progressLine(now time.Time, lag *lagWatch) string {
	s := r.led.snapshot(now)
	line := fmt.Sprintf("[%s %3.0fs/%.0fs] sent %d (%.0f/s) answered %d (%.0f/s) waiting %d errors %d p99 %.0fms",
		r.cfg.Scenario, now.Sub(r.begin).Seconds(), r.cfg.Duration.Seconds(), s.sent, s.sentRate, s.answered, s.answeredRate,
		s.waiting, s.errors, s.p99)
	if lag != nil {
		total := 0.0
		for _, pts := range lag.out() {
			if len(pts) > 0 {
				total += pts[len(pts)-1].V
			}
		}
		line += fmt.Sprintf(" lag %.0f", total)
	}
	return line
}

// direct sends the reference requests to the model until stop, open loop.
func (r *run) direct(ctx context.Context, stop <-chan struct{}) {
	dc := newDirectCaller(r.cfg.ModelURL)
	defer dc.client.CloseIdleConnections()
	interval := time.Duration(float64(time.Second) / r.cfg.DirectRate)
	var wg sync.WaitGroup
	defer wg.Wait()
	for i := 0; ; i++ {
		intended := r.begin.Add(time.Duration(i) * interval)
		if intended.Sub(r.begin) >= r.cfg.Duration {
			return
		}
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(time.Until(intended)):
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := Message{Model: r.cfg.Model, Stream: r.cfg.Stream, MaxTokens: r.cfg.MaxTokens, Content: fmt.Sprintf("direct reference %d", i)}
			first, err := dc.call(ctx, m)
			now := time.Now()
			var ttfc time.Duration
			if !first.IsZero() {
				ttfc = first.Sub(intended)
			}
			r.led.recordDirect(now.Sub(intended), ttfc, intended.Sub(r.begin) >= r.cfg.Warmup, err)
		}()
	}
}

// baseChecks are the statements every run is held to.
func baseChecks(rep *Report, allowDup bool) []Check {
	var out []Check
	names := make([]string, 0, len(rep.Classes))
	for n := range rep.Classes {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := rep.Classes[n]
		out = append(out,
			Check{Name: n + ": nothing lost", Pass: c.Lost == 0, Detail: fmt.Sprintf("%d of %d accepted requests never answered", c.Lost, c.Accepted)},
			Check{Name: n + ": order kept", Pass: c.OrderViolations == 0, Detail: fmt.Sprintf("%d answers out of order", c.OrderViolations)})
		dup := Check{Name: n + ": no duplicates", Pass: c.Duplicates == 0, Detail: fmt.Sprintf("%d duplicate answers", c.Duplicates)}
		if allowDup {
			dup.Pass, dup.Detail = true, dup.Detail+" (at-least-once after a crash: allowed)"
		}
		out = append(out, dup)
	}
	if m := rep.Malformed; m != nil {
		out = append(out, Check{Name: "malformed: every bad input rejected, dead-lettered or answered with an error",
			Pass: m.Unhandled == 0, Detail: fmt.Sprintf("%d of %d not", m.Unhandled, m.Sent)})
	}
	return out
}
