package console

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/status"
)

// DeadLetter is a dead letter as the page shows it.
type DeadLetter struct {
	At              time.Time `json:"at"`
	Reason          string    `json:"reason"`
	Detail          string    `json:"detail"`
	RequestID       string    `json:"request_id,omitempty"`
	SourceTopic     string    `json:"source_topic"`
	SourcePartition int32     `json:"source_partition"`
	SourceOffset    int64     `json:"source_offset"`
	Partition       int32     `json:"partition"`
	Offset          int64     `json:"offset"`
}

// maxDetail bounds a dead letter's detail on the page.
const maxDetail = 300

// readTail reads the results and dead-letter topics until ctx is done.
func (c *Console) readTail(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		var errs []error
		fs.EachError(func(t string, p int32, err error) { errs = append(errs, fmt.Errorf("%s[%d]: %w", t, p, err)) })
		c.problem("tail", errors.Join(errs...))
		fs.EachRecord(func(rec *kgo.Record) {
			switch rec.Topic {
			case c.results:
				c.observeResult(rec)
			case c.dlq:
				c.observeDeadLetter(rec)
			}
		})
	}
}

// observeResult counts a terminal result in its second, with its latency:
// from the request's acceptance to its completion (or the record's
// timestamp when the result carries no timings).
func (c *Console) observeResult(rec *kgo.Record) {
	if envelope.ResultIsChunk(rec) {
		return // most records of a streamed answer: not decoded
	}
	res, err := envelope.DecodeResult(rec)
	if err != nil || res.GetChunk() != nil {
		return // a record egress cannot read either is egress's to report
	}
	var latency time.Duration
	failed := res.GetError() != nil
	if tm := res.GetFinal().GetTimings(); tm.GetAcceptedAt() != nil {
		end := rec.Timestamp
		if tm.GetCompletedAt() != nil {
			end = tm.GetCompletedAt().AsTime()
		}
		latency = end.Sub(tm.GetAcceptedAt().AsTime())
	}
	c.mu.Lock()
	c.series.add(rec.Timestamp, latency, failed)
	c.mu.Unlock()
}

// observeDeadLetter keeps a dead letter's reason and origin.
func (c *Console) observeDeadLetter(rec *kgo.Record) {
	d := DeadLetter{At: rec.Timestamp, Partition: rec.Partition, Offset: rec.Offset}
	dl, _, err := envelope.DecodeDeadLetter(rec)
	if err != nil {
		d.Reason, d.Detail = "unreadable", err.Error()
	} else {
		d.Reason, d.Detail, d.RequestID = dl.GetReason(), dl.GetDetail(), dl.GetRequestId()
		d.SourceTopic, d.SourcePartition, d.SourceOffset = dl.GetSourceTopic(), dl.GetSourcePartition(), dl.GetSourceOffset()
		if dl.GetFailedAt() != nil {
			d.At = dl.GetFailedAt().AsTime()
		}
	}
	if len(d.Detail) > maxDetail {
		d.Detail = strings.ToValidUTF8(d.Detail[:maxDetail], "") + "…"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadSeen++
	c.dead = append(c.dead, d)
	if n := len(c.dead) - c.cfg.DeadLetters; n > 0 {
		c.dead = append(c.dead[:0], c.dead[n:]...)
	}
}

// readStatus reads the status topic from its start until ctx is done,
// keeping each instance's latest record; a tombstone removes it.
func (c *Console) readStatus(ctx context.Context, cl *kgo.Client) {
	for {
		fs := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return
		}
		var errs []error
		fs.EachError(func(t string, p int32, err error) { errs = append(errs, fmt.Errorf("%s[%d]: %w", t, p, err)) })
		fs.EachRecord(func(rec *kgo.Record) {
			r, err := status.Decode(rec.Key, rec.Value)
			c.mu.Lock()
			defer c.mu.Unlock()
			switch {
			case errors.Is(err, status.ErrTombstone):
				delete(c.instances, string(rec.Key))
			case err != nil:
				errs = append(errs, fmt.Errorf("status record at offset %d: %w", rec.Offset, err))
			default:
				c.instances[string(rec.Key)] = r
			}
		})
		c.problem("status", errors.Join(errs...))
	}
}
