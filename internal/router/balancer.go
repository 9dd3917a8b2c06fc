package router

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
	"golang.org/x/time/rate"

	"github.com/switchboard-llm/switchboard/internal/llm"
)

// The balancer chooses a backend for each call (smooth weighted
// round-robin among the backends of a model that can take it), keeps their
// in-flight counts, rate limits and circuit breakers, and derives the
// breaker states of the two upper levels:
//
//   - endpoint: one backend's breaker (gobreaker): Breaker.Failures
//     consecutive failed calls open it, it rejects calls for
//     Breaker.OpenFor, then lets Breaker.Probes calls through (half-open);
//     they close it if all succeed and open it again if one fails.
//   - service: a model's pool is open when every backend serving it is
//     open; requests go to the model's fallbacks.
//   - system: open when every backend is open, closed again once any
//     backend's breaker leaves the open state: it turns half-open after
//     Breaker.OpenFor, and requests must flow again to probe it (a failed
//     probe reopens it and, with every backend open, the system). While it
//     is open the router pauses fetching and requests wait instead of
//     failing, so the messages wait in Kafka. watchSystem looks at the
//     breakers on a timer, since with fetching paused and no request left
//     waiting nothing else would.
//
// Concurrency: mu guards everything in the balancer and the mutable
// fields of its endpoints. Breakers have their own locks, taken under mu
// (lock order mu -> breaker); their state-change callbacks only touch
// atomics and metrics. The system hook is called outside mu, serialized by
// sysMu.
type balancer struct {
	applyMu sync.Mutex // serializes apply
	mu      sync.Mutex
	routing Routing
	eps     []*endpoint            // current backends, in file order
	byModel map[string][]*endpoint // served model -> backends
	served  map[string]bool
	// waiters are the requests waiting for a backend, by the model they
	// wait on ("" for those waiting on open breakers). A freed slot wakes
	// the first waiter of each of its backend's models; a state change
	// (breaker, system, reload) wakes everyone. Waiters also wake on their
	// own timers (rate limits refilling, breakers turning half-open, and
	// at most every second), so a wake-up lost to a waiter that gave up
	// delays the others by at most that.
	waiters    map[string][]*waiter
	sysOpen    bool
	onSystem   func(open bool) // pauses or resumes consumption
	sysMu      sync.Mutex      // serializes onSystem calls
	sysShown   bool            // the state onSystem was last called with
	sysNowOpen atomic.Bool
}

// endpoint is one backend: its client, breaker and limits.
type endpoint struct {
	cfg      Backend // guarded by balancer.mu
	client   *llm.Client
	breaker  *gobreaker.TwoStepCircuitBreaker[struct{}]
	requests *rate.Limiter // nil: unlimited
	tokens   *tokenBucket  // nil: unlimited
	// Guarded by balancer.mu.
	inflight  int
	current   int       // smooth weighted round-robin weight
	coolUntil time.Time // Retry-After: no calls before
	// openUntil is when an open breaker turns half-open (unix nanos).
	openUntil atomic.Int64
}

// Breaker state values of the switchboard_router_breaker_state gauge.
const (
	stateClosed   = 0
	stateHalfOpen = 1
	stateOpen     = 2
)

func gaugeValue(s gobreaker.State) float64 {
	switch s {
	case gobreaker.StateOpen:
		return stateOpen
	case gobreaker.StateHalfOpen:
		return stateHalfOpen
	default:
		return stateClosed
	}
}

func newBalancer(r Routing, onSystem func(open bool)) (*balancer, error) {
	b := &balancer{waiters: map[string][]*waiter{}, onSystem: onSystem}
	if err := b.apply(r); err != nil {
		return nil, err
	}
	return b, nil
}

// sameEndpoint reports whether a backend's connection settings and the
// breaker settings are unchanged, so that its client, breaker and
// in-flight count carry over a reload.
func sameEndpoint(a, b Backend, ba, bb Breaker) bool {
	return a.BaseURL == b.BaseURL && a.APIKey == b.APIKey && a.MaxConcurrency == b.MaxConcurrency &&
		a.ConnectTimeout == b.ConnectTimeout && a.FirstTokenTimeout == b.FirstTokenTimeout &&
		a.Timeout == b.Timeout && ba == bb
}

// apply installs a new routing. Backends whose connection and breaker
// settings are unchanged keep their client, breaker, limiter state and
// in-flight count; calls in flight on replaced or removed backends finish
// on their old clients.
func (b *balancer) apply(r Routing) error {
	if err := r.Validate(); err != nil {
		return err
	}
	r = r.withDefaults()
	b.applyMu.Lock()
	defer b.applyMu.Unlock()
	b.mu.Lock()
	old := map[string]*endpoint{}
	for _, ep := range b.eps {
		old[ep.cfg.Name] = ep
	}
	oldBreaker := b.routing.Breaker
	b.mu.Unlock()

	eps := make([]*endpoint, 0, len(r.Backends))
	var retired []*endpoint
	for _, bc := range r.Backends {
		if ep := old[bc.Name]; ep != nil && sameEndpoint(ep.cfg, bc, oldBreaker, r.Breaker) {
			eps = append(eps, ep)
			delete(old, bc.Name)
			continue
		}
		ep, err := b.newEndpoint(bc, r.Breaker)
		if err != nil {
			return fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		eps = append(eps, ep)
	}
	for _, ep := range old {
		retired = append(retired, ep)
	}

	b.mu.Lock()
	for i, ep := range eps {
		bc := r.Backends[i]
		if ep.requests != nil && bc.RequestsPerMinute > 0 {
			ep.requests.SetLimit(rate.Limit(float64(bc.RequestsPerMinute) / 60))
			ep.requests.SetBurst(bc.RequestsPerMinute)
		} else {
			ep.requests = newRequestLimiter(bc.RequestsPerMinute)
		}
		if ep.tokens != nil && bc.TokensPerMinute > 0 {
			ep.tokens.setLimit(bc.TokensPerMinute)
		} else {
			ep.tokens = newTokenBucket(bc.TokensPerMinute)
		}
		ep.cfg = bc
	}
	b.routing = r
	b.eps = eps
	b.byModel = map[string][]*endpoint{}
	b.served = map[string]bool{}
	for _, ep := range eps {
		for _, m := range ep.cfg.Models {
			b.byModel[m] = append(b.byModel[m], ep)
			b.served[m] = true
		}
	}
	b.updateSystem()
	b.wakeAll()
	b.mu.Unlock()
	for _, ep := range retired {
		ep.client.CloseIdleConnections() // calls in flight are not affected
	}
	b.showSystem()
	return nil
}

func newRequestLimiter(perMinute int) *rate.Limiter {
	if perMinute <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(float64(perMinute)/60), perMinute)
}

// Breaker outcomes passed to a breaker's done function.
var (
	errBreakerFailure = errors.New("backend failure")
	errBreakerExclude = errors.New("not the backend's fault or merit")
)

func (b *balancer) newEndpoint(bc Backend, br Breaker) (*endpoint, error) {
	client, err := llm.New(llm.Config{
		BaseURL:           bc.BaseURL,
		APIKey:            bc.APIKey,
		MaxConns:          bc.MaxConcurrency,
		ConnectTimeout:    bc.ConnectTimeout,
		FirstTokenTimeout: bc.FirstTokenTimeout,
		TotalTimeout:      bc.Timeout,
	})
	if err != nil {
		return nil, err
	}
	ep := &endpoint{cfg: bc, client: client}
	failures := uint32(br.Failures)
	ep.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        bc.Name,
		MaxRequests: uint32(br.Probes),
		Timeout:     br.OpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= failures },
		IsExcluded:  func(err error) bool { return errors.Is(err, errBreakerExclude) },
		// Called under the breaker's lock, often with balancer.mu held:
		// atomics only.
		OnStateChange: func(_ string, _, to gobreaker.State) {
			if to == gobreaker.StateOpen {
				ep.openUntil.Store(time.Now().Add(br.OpenFor).UnixNano())
			}
		},
	})
	return ep, nil
}

// breakerOutcome classifies a call's error for the endpoint breaker: a
// backend that answered (even 4xx or 429) is up; 5xx, timeouts and broken
// connections are failures; the caller giving up is neither.
func breakerOutcome(err error) error {
	var le *llm.Error
	switch {
	case err == nil:
		return nil
	case !errors.As(err, &le):
		return errBreakerExclude
	case le.StatusCode == 429 || !le.Retryable:
		return nil
	default:
		return errBreakerFailure
	}
}

// lease is a backend chosen for one call; release must be called once.
type lease struct {
	ep    *endpoint
	name  string // the backend's name (ep.cfg may change under a reload)
	model string
	taken int // tokens taken from the backend's bucket
	done  func(error)
}

// Why pick found no backend that can take a call now.
const (
	waitConcurrency = "concurrency"
	waitRateLimit   = "rate_limit"
	waitProbe       = "half_open"
	waitRetryAfter  = "retry_after"
	waitSystem      = "system_open"
)

// pickResult is a lease, or why there is none and when to look again.
type pickResult struct {
	lease *lease
	// open: every backend of every model in the chain has an open breaker.
	open bool
	// system: the system breaker is open (see balancer).
	system bool
	// reason says what is full when neither lease nor open is set.
	reason string
	// wake is when trying again may succeed even without a change.
	wake time.Time
	// waiter is signalled when trying again may succeed; acquire must
	// cancel it if it stops waiting for another reason.
	waiter *waiter
}

// pick chooses a backend for a call needing about estimate tokens among
// the models of chain, in order: a model whose backends all have open
// breakers falls back to the next. Within a model it skips backends that
// are open, cooling down after a Retry-After, at max concurrency or out of
// rate; among the rest, smooth weighted round-robin picks one, the least
// loaded on a tie.
func (b *balancer) pick(chain []string, estimate int) pickResult {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	res := pickResult{wake: now.Add(time.Second)}
	soon := func(t time.Time, reason string) {
		res.wake = minTime(res.wake, t)
		if res.reason == "" {
			res.reason = reason
		}
	}
	for _, model := range chain {
		var cands []*endpoint
		open := 0
		for _, ep := range b.byModel[model] {
			st := ep.breaker.State()
			switch {
			case st == gobreaker.StateOpen:
				open++
				res.wake = minTime(res.wake, time.Unix(0, ep.openUntil.Load()))
			case now.Before(ep.coolUntil):
				soon(ep.coolUntil, waitRetryAfter)
			case ep.inflight >= ep.cfg.MaxConcurrency:
				res.reason = waitConcurrency
			default:
				if d := ep.rateWait(now, estimate); d > 0 {
					soon(now.Add(d), waitRateLimit)
					continue
				}
				cands = append(cands, ep)
			}
		}
		for len(cands) > 0 {
			i := swrr(cands)
			ep := cands[i]
			done, err := ep.breaker.Allow()
			if err != nil { // half-open with its probes out
				cands = append(cands[:i], cands[i+1:]...)
				res.reason = waitProbe
				continue
			}
			if ep.requests != nil {
				ep.requests.AllowN(now, 1)
			}
			taken := 0
			if ep.tokens != nil {
				taken = int(min(float64(estimate), ep.tokens.capacity))
				ep.tokens.take(now, estimate)
			}
			ep.inflight++
			res.lease = &lease{ep: ep, name: ep.cfg.Name, model: model, taken: taken, done: done}
			b.updateSystem()
			return res
		}
		if open < len(b.byModel[model]) {
			// Some backend is up but busy: wait for it rather than fall back.
			if res.reason == "" {
				res.reason = waitProbe
			}
			res.waiter = b.addWaiter(model)
			return res
		}
	}
	res.open = true
	b.updateSystem()
	res.system = b.sysOpen
	if res.system {
		res.reason = waitSystem
		res.waiter = b.addWaiter("")
	}
	return res
}

// waiter is one request waiting for a backend.
type waiter struct {
	model string
	ch    chan struct{} // buffered 1: a wake-up is never blocked or lost
}

// addWaiter queues a waiter on model. Called with mu held.
func (b *balancer) addWaiter(model string) *waiter {
	w := &waiter{model: model, ch: make(chan struct{}, 1)}
	b.waiters[model] = append(b.waiters[model], w)
	return w
}

// cancelWait removes w if it is still queued.
func (b *balancer) cancelWait(w *waiter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.waiters[w.model]
	if i := slices.Index(q, w); i >= 0 {
		b.waiters[w.model] = slices.Delete(q, i, i+1)
	}
}

// wakeOne wakes the first waiter on model. Called with mu held.
func (b *balancer) wakeOne(model string) {
	q := b.waiters[model]
	if len(q) == 0 {
		return
	}
	q[0].ch <- struct{}{}
	b.waiters[model] = slices.Delete(q, 0, 1)
}

// passOn gives a wake-up that w will not use to the next waiter.
func (b *balancer) passOn(w *waiter) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.wakeOne(w.model)
}

// wakeAll wakes every waiter. Called with mu held.
func (b *balancer) wakeAll() {
	for m, q := range b.waiters {
		for _, w := range q {
			w.ch <- struct{}{}
		}
		delete(b.waiters, m)
	}
}

// rateWait returns how long until the endpoint's limits admit one more
// call of estimate tokens, or zero. It rounds up, so that zero means the
// takes in pick (at the same now) succeed.
func (ep *endpoint) rateWait(now time.Time, estimate int) time.Duration {
	var d time.Duration
	if ep.requests != nil {
		if t := ep.requests.TokensAt(now); t < 1 {
			d = time.Duration(math.Ceil((1 - t) / float64(ep.requests.Limit()) * float64(time.Second)))
		}
	}
	if ep.tokens != nil {
		ep.tokens.mu.Lock()
		ep.tokens.refill(now)
		need := min(float64(estimate), ep.tokens.capacity)
		if ep.tokens.tokens < need {
			d = max(d, time.Duration(math.Ceil((need-ep.tokens.tokens)/ep.tokens.rate*float64(time.Second))))
		}
		ep.tokens.mu.Unlock()
	}
	return max(d, 0)
}

// swrr is smooth weighted round-robin (as in nginx) over cands: every
// candidate gains its weight, the largest current weight wins (the fewest
// in flight on a tie) and loses the total. It returns the winner's index.
func swrr(cands []*endpoint) int {
	total, best := 0, -1
	for i, ep := range cands {
		ep.current += ep.cfg.Weight
		total += ep.cfg.Weight
		if best < 0 || ep.current > cands[best].current ||
			(ep.current == cands[best].current && ep.inflight < cands[best].inflight) {
			best = i
		}
	}
	cands[best].current -= total
	return best
}

// release ends a lease: it frees the slot, reports the call's outcome to
// the breaker, reconciles the token estimate with the reported usage
// (refunding it all when the call failed) and records a Retry-After.
func (b *balancer) release(l *lease, err error, usedTokens int) {
	b.mu.Lock()
	l.ep.inflight--
	before := l.ep.breaker.State()
	l.done(breakerOutcome(err))
	switch {
	case err != nil:
		l.ep.tokens.give(l.taken)
	case usedTokens > 0:
		l.ep.tokens.give(l.taken - usedTokens)
	}
	if ra := llm.RetryAfter(err); ra > 0 {
		l.ep.coolUntil = time.Now().Add(min(ra, maxRetryAfter))
	}
	b.updateSystem()
	if l.ep.breaker.State() != before {
		b.wakeAll()
	} else {
		for _, m := range l.ep.cfg.Models {
			b.wakeOne(m)
		}
	}
	b.mu.Unlock()
	b.showSystem()
}

// maxRetryAfter caps a backend's Retry-After: a backend asking for a day
// would otherwise leave rotation (and hold a request's conversation) for
// that long.
const maxRetryAfter = 5 * time.Minute

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

// updateSystem opens the system breaker when every backend's breaker is
// open and closes it once any is not (reading a breaker's state also turns
// it half-open when its OpenFor has passed). Called with mu held.
func (b *balancer) updateSystem() {
	allOpen := len(b.eps) > 0
	for _, ep := range b.eps {
		if ep.breaker.State() != gobreaker.StateOpen {
			allOpen = false
		}
	}
	if allOpen == b.sysOpen {
		return
	}
	b.sysOpen = allOpen
	b.sysNowOpen.Store(b.sysOpen)
	b.wakeAll()
}

// watchSystem re-evaluates the system breaker every interval until ctx
// ends, so that an open system closes when a backend's OpenFor has passed
// even though no request is left to ask (fetching is paused).
func (b *balancer) watchSystem(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			b.mu.Lock()
			b.updateSystem()
			b.mu.Unlock()
			b.showSystem()
		}
	}
}

// showSystem brings onSystem up to date with the latest system state.
// Called without mu.
func (b *balancer) showSystem() {
	b.sysMu.Lock()
	defer b.sysMu.Unlock()
	open := b.sysNowOpen.Load()
	if open == b.sysShown {
		return
	}
	b.sysShown = open
	if b.onSystem != nil {
		b.onSystem(open)
	}
}

// systemOpen reports the system breaker's state.
func (b *balancer) systemOpen() bool { return b.sysNowOpen.Load() }

// chain returns the models to try for a requested model, nil if unknown.
func (b *balancer) chain(model string) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.routing.chain(model, b.served)
}

// tenants returns the current tenant limits.
func (b *balancer) tenantLimits() Tenants {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.routing.Tenants
}

// poolState is a snapshot of the breaker states and in-flight counts.
type poolState struct {
	endpoints map[string]float64 // backend -> state
	services  map[string]float64 // model -> state: open when all its backends are, half-open when none is closed
	system    float64
	inflight  map[string]int
}

func (b *balancer) snapshot() poolState {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := poolState{endpoints: map[string]float64{}, services: map[string]float64{}, inflight: map[string]int{}}
	for _, ep := range b.eps {
		s.endpoints[ep.cfg.Name] = gaugeValue(ep.breaker.State())
		s.inflight[ep.cfg.Name] = ep.inflight
	}
	for m, eps := range b.byModel {
		worst := float64(stateOpen)
		for _, ep := range eps {
			worst = min(worst, s.endpoints[ep.cfg.Name])
		}
		s.services[m] = worst
	}
	if b.sysOpen {
		s.system = stateOpen
	}
	return s
}
