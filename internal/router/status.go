package router

import (
	"context"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/switchboard-llm/switchboard/internal/status"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// latencySpan is how far back a status record's backend latencies and call
// counts look.
const latencySpan = time.Minute

// publishStatus writes this worker's status record (internal/status) to
// the status topic every StatusInterval until ctx is done, when the topics
// spec has that topic and the interval is not negative.
func (r *Router) publishStatus(ctx context.Context) {
	if _, ok := r.cfg.Topics.Topic(topicspec.Status); !ok || r.cfg.StatusInterval < 0 {
		return
	}
	p := &status.Publisher{Opts: r.cfg.Kafka.Opts(r.log), Topic: r.cfg.Topics.Name(topicspec.Status),
		Service: status.ServiceRouter, Instance: r.cfg.InstanceID, Interval: r.cfg.StatusInterval,
		Fill: r.fillStatus, Logger: r.log}
	if err := p.Run(ctx); err != nil {
		r.log.Warn("not publishing status records", "err", err)
	}
}

// fillStatus fills a status record's router section.
func (r *Router) fillStatus(rec *status.Record) {
	st := r.engine.Status()
	n, convs := r.inflight.Snapshot(status.MaxConversations)
	rt := &status.Router{Group: st.Group, MemberID: st.MemberID, Partitions: st.Partitions,
		InFlight: n, MaxInFlight: r.cfg.MaxInFlight, Conversations: convs, System: status.BreakerClosed}
	if r.bal.sysNowOpen.Load() {
		rt.System = status.BreakerOpen
	}
	rt.Backends = r.bal.statusBackends()
	for i := range rt.Backends {
		b := &rt.Backends[i]
		b.Calls, b.Failures, b.P50MS, b.P99MS = r.calls.Stats(b.Name, rec.At)
	}
	rec.Router = rt
}

// statusBackends lists the backends with their breaker states, in-flight
// calls and limits, in file order.
func (b *balancer) statusBackends() []status.Backend {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]status.Backend, 0, len(b.eps))
	for _, ep := range b.eps {
		out = append(out, status.Backend{Name: ep.cfg.Name, Models: ep.cfg.Models, Breaker: breakerName(ep.breaker.State()),
			InFlight: ep.inflight, MaxConcurrency: ep.cfg.MaxConcurrency,
			RequestsPerMinute: ep.cfg.RequestsPerMinute, TokensPerMinute: ep.cfg.TokensPerMinute})
	}
	return out
}

func breakerName(s gobreaker.State) string {
	switch s {
	case gobreaker.StateOpen:
		return status.BreakerOpen
	case gobreaker.StateHalfOpen:
		return status.BreakerHalfOpen
	default:
		return status.BreakerClosed
	}
}
