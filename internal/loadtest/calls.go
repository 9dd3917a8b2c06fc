package loadtest

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// CallSender is implemented by drivers that can send several messages in
// one call: a batch request, or one message after another on one stream
// without waiting for the answers. Switchboard stores a conversation's
// messages of one call in the order given, and the calls loads (Load.PerCall)
// check it at the client and in the requests topic. The contract:
//
//   - SendCall returns one error per message, in order; nil only for a
//     message the entry point accepted for good (as for Send);
//   - messages are handed to the entry point in slice order, in one call;
//   - SendCall is safe for concurrent use.
type CallSender interface {
	Driver
	SendCall(ctx context.Context, ms []Message) []error
}

// callConvs returns the conversations of call c of a calls load: ConvsPerCall
// consecutive conversations, round-robin over the load's conversations.
func (r *run) callConvs(li, c int, l Load) []string {
	out := make([]string, l.ConvsPerCall)
	for k := range out {
		out[k] = r.convID(li, (c*l.ConvsPerCall+k)%l.Conversations)
	}
	return out
}

// openLoopCalls sends l's requests in calls of PerCall messages at the
// load's rate, each call on its own goroutine (owned by wg). A call's
// messages interleave its conversations: message k goes to conversation
// k mod ConvsPerCall. The call holds its conversations' locks, so a
// conversation's messages are registered in the order they are sent.
func (r *run) openLoopCalls(ctx context.Context, li int, l Load, s CallSender, wg *sync.WaitGroup) {
	interval := time.Duration(float64(time.Second) * float64(l.PerCall) / l.Rate)
	calls := int(l.Rate * l.Duration.Seconds() / float64(l.PerCall))
	start := r.begin.Add(l.Start)
	for c := range calls {
		intended := start.Add(time.Duration(c) * interval)
		if !sleepUntil(ctx, intended) {
			return
		}
		convs := r.callConvs(li, c, l)
		wg.Add(1)
		go func() {
			defer wg.Done()
			locks := slices.Clone(convs)
			slices.Sort(locks)
			locks = slices.Compact(locks) // in name order: two calls never wait on each other in a cycle
			for _, conv := range locks {
				mu := r.convLock(conv)
				mu.Lock()
				defer mu.Unlock()
			}
			ms := make([]Message, l.PerCall)
			es := make([]*entry, l.PerCall)
			for k := range ms {
				i := c*l.PerCall + k
				conv := convs[k%len(convs)]
				id := fmt.Sprintf("%s-l%d-%d", r.cfg.RunID, li, i)
				ms[k] = r.message(id, conv, l, i)
				es[k] = r.led.register(l.Class, conv, id, intended)
			}
			errs := s.SendCall(ctx, ms)
			now := time.Now()
			for k, e := range es {
				r.led.sent(e, errs[k], now)
			}
		}()
	}
}

// callsDefaults checks a calls load (PerCall > 1) and fills its defaults.
func (c *Config) callsDefaults(i int, l *Load) error {
	if l.PerCall <= 1 {
		return nil
	}
	if l.Rate == 0 {
		return fmt.Errorf("loadtest: load %d: calls (per_call %d) need an open-loop rate", i, l.PerCall)
	}
	if l.ConvsPerCall == 0 {
		l.ConvsPerCall = 2
	}
	if l.ConvsPerCall < 1 || l.ConvsPerCall > l.Conversations || l.ConvsPerCall > l.PerCall {
		return fmt.Errorf("loadtest: load %d: %d conversations per call must be between 1 and both the load's conversations and the messages per call", i, l.ConvsPerCall)
	}
	if c.caller(*l) == nil {
		return fmt.Errorf("loadtest: load %d: no driver %q that sends several messages in one call", i, l.Via)
	}
	return nil
}

// caller returns the CallSender of a calls load, or nil.
func (c *Config) caller(l Load) CallSender {
	if l.Via != "" {
		return c.Callers[l.Via]
	}
	s, _ := c.Driver.(CallSender)
	return s
}
