package ingress

import (
	"context"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/status"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// publishStatus writes this instance's status record (internal/status:
// its admission state) to the status topic every StatusInterval until ctx
// is done, when the topics spec has that topic and the interval is not
// negative.
func (in *Ingress) publishStatus(ctx context.Context) {
	if _, ok := in.cfg.Topics.Topic(topicspec.Status); !ok || in.cfg.StatusInterval < 0 {
		return
	}
	p := &status.Publisher{Opts: in.cfg.Kafka.Opts(in.log), Topic: in.cfg.Topics.Name(topicspec.Status),
		Service: status.ServiceIngress, Interval: in.cfg.StatusInterval, Logger: in.log,
		Fill: func(r *status.Record) { r.Ingress = in.admission.status(in.cfg.Admission.Group) }}
	if err := p.Run(ctx); err != nil {
		in.log.Warn("not publishing status records", "err", err)
	}
}

// status returns the admission state of each lane (nil a: admission off).
func (a *admission) status(group string) *status.Ingress {
	if a == nil {
		return &status.Ingress{}
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	s := &status.Ingress{Admission: true, Group: group}
	for _, lane := range []string{envelope.LaneInteractive, envelope.LaneBatch} {
		l := status.Lane{Lane: lane, Shedding: a.shedding[lane], Lag: a.lag[lane], DrainPerSec: a.drain[lane],
			High: a.cfg.InteractiveHigh, Low: a.cfg.InteractiveLow}
		if lane == envelope.LaneBatch { // the batch lane is driven by the total lag
			l.Lag += a.lag[envelope.LaneInteractive]
			l.High, l.Low = a.cfg.BatchHigh, a.cfg.BatchLow
		}
		s.Lanes = append(s.Lanes, l)
	}
	return s
}
