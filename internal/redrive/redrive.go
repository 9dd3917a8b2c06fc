// Package redrive reads the dead-letter topic and sends the requests it holds
// back to their requests topics, in conversation order, for operators who
// fixed what made them fail (a backend, a model name, a limit).
//
// Order: the dead-letter topic is keyed by conversation, so one conversation's
// dead letters sit in one partition in the order they failed. Each partition
// is read in offset order and its requests are produced in that order by one
// idempotent producer, keyed by conversation again, so they reach their
// requests partition in the same order.
//
// A run reads up to the end offsets it finds at its start, so it always ends.
// With Execute, the offsets it has re-driven are committed to Group after
// every produced batch, and the next run starts after them: re-running does
// not send the same dead letters twice (unless FromStart). Without Execute it
// only lists what it would do and commits nothing.
//
// Re-driven requests get a new request_id (the old one is kept in metadata
// "redrive_of"): readers drop repeats of a request_id, and the failed run
// already ended the old one with an error result. accepted_at becomes the
// time of the re-drive and the old deadline is dropped, since it has passed.
// Records that do not decode as requests (reason decode_error) are reported
// and skipped: they would only fail again.
package redrive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// Config selects dead letters and what to do with them.
type Config struct {
	// Kafka says how to reach the cluster.
	Kafka kafkaconf.Config
	// Topics names the dead-letter and requests topics. Required.
	Topics *topicspec.Spec
	// Group keeps the offsets already re-driven. Default "switchboard-redrive".
	Group string
	// FromStart reads from the start of the topic instead of after the
	// group's committed offsets.
	FromStart bool
	// Reasons keeps only dead letters with one of these reasons; empty keeps
	// all.
	Reasons []string
	// Conversations keeps only these conversation IDs; empty keeps all.
	Conversations []string
	// Execute produces the requests and commits progress; false only lists.
	Execute bool
	// Limit stops after this many selected dead letters; 0 means no limit.
	// The rest of a partition after the limit waits for the next run, so
	// a conversation's order holds across runs.
	Limit int
	// Out receives one JSON line per dead letter read. Default io.Discard.
	Out io.Writer
	// Logger receives progress logs. Default slog.Default().
	Logger *slog.Logger
}

// Line is what Run writes to Out for each dead letter it reads.
type Line struct {
	Partition      int32     `json:"partition"`
	Offset         int64     `json:"offset"`
	ConversationID string    `json:"conversation_id"`
	Reason         string    `json:"reason"`
	Detail         string    `json:"detail,omitempty"`
	RequestID      string    `json:"request_id,omitempty"`
	Source         string    `json:"source"`
	FailedAt       time.Time `json:"failed_at"`
	// Action is "redriven", "would_redrive" (not Execute), "filtered",
	// "undecodable" or "not_a_request".
	Action       string `json:"action"`
	NewRequestID string `json:"new_request_id,omitempty"`
	Error        string `json:"error,omitempty"`
}

// Report counts what a run did.
type Report struct {
	Read, Redriven, WouldRedrive, Filtered, Skipped int
}

func (r Report) String() string {
	return fmt.Sprintf("read %d dead letters: %d re-driven, %d would be re-driven, %d filtered out, %d skipped (undecodable or not a request)",
		r.Read, r.Redriven, r.WouldRedrive, r.Filtered, r.Skipped)
}

// Run reads the dead-letter topic up to its current end and re-drives (or
// lists) the selected dead letters. It returns what it did so far even when
// it fails.
func Run(ctx context.Context, cfg Config) (Report, error) {
	if err := cfg.complete(); err != nil {
		return Report{}, err
	}
	// Control records are kept so that a partition ending in a transaction
	// marker is still read to its end; aborted dead letters are skipped.
	cl, err := kgo.NewClient(append(cfg.Kafka.Opts(cfg.Logger),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0),
		kgo.KeepControlRecords(), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return Report{}, fmt.Errorf("redrive: kafka client: %w", err)
	}
	defer cl.Close()
	r := newRun(cfg, cl)
	if err := r.position(ctx); err != nil || len(r.remaining) == 0 {
		return r.rep, err
	}
	for len(r.remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return r.rep, err
		}
		if err := fetches.Err0(); err != nil {
			return r.rep, fmt.Errorf("redrive: fetch %s: %w", r.dlq, err)
		}
		b := r.take(fetches)
		if err := r.finish(ctx, b); err != nil {
			return r.rep, err
		}
		if b.stop {
			cfg.Logger.Info("limit reached", "limit", cfg.Limit)
			break
		}
	}
	return r.rep, nil
}

// complete checks cfg and fills in its defaults.
func (cfg *Config) complete() error {
	if cfg.Topics == nil {
		return errors.New("redrive: topics spec is required")
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return err
	}
	if cfg.Limit < 0 {
		return errors.New("redrive: limit must not be negative")
	}
	if cfg.Group == "" {
		cfg.Group = "switchboard-redrive"
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return nil
}

// run is one re-drive under way.
type run struct {
	cfg       Config
	cl        *kgo.Client
	adm       *kadm.Client
	dlq       string
	requests  map[string]bool // the requests topics
	selected  map[string]bool // Config.Conversations
	enc       *json.Encoder
	remaining map[int32]int64 // partition -> end offset still to reach
	rep       Report
}

func newRun(cfg Config, cl *kgo.Client) *run {
	r := &run{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), dlq: cfg.Topics.Name(topicspec.DeadLetter),
		requests: map[string]bool{
			cfg.Topics.Name(topicspec.RequestsInteractive): true,
			cfg.Topics.Name(topicspec.RequestsBatch):       true,
		},
		selected: map[string]bool{}, enc: json.NewEncoder(cfg.Out), remaining: map[int32]int64{}}
	for _, c := range cfg.Conversations {
		r.selected[c] = true
	}
	return r
}

// position starts consuming every partition of the dead-letter topic that
// has records between where this run starts and the topic's current end.
func (r *run) position(ctx context.Context) error {
	ends, err := r.adm.ListEndOffsets(ctx, r.dlq)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return fmt.Errorf("redrive: end offsets of %s: %w", r.dlq, err)
	}
	starts, err := startOffsets(ctx, r.adm, r.cfg, r.dlq)
	if err != nil {
		return err
	}
	consume := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) {
		if from := starts[o.Partition]; from < o.Offset {
			consume[o.Partition] = kgo.NewOffset().At(from)
			r.remaining[o.Partition] = o.Offset
		}
	})
	if len(consume) > 0 {
		r.cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{r.dlq: consume})
	}
	return nil
}

// batch is what one fetch yields: requests to produce, report lines, the
// progress to commit after them, and whether the limit was reached.
type batch struct {
	out    []*kgo.Record
	lines  []*Line
	commit kadm.Offsets
	stop   bool
}

// take classifies the fetched records up to each partition's end, or up to
// the limit.
func (r *run) take(fetches kgo.Fetches) *batch {
	b := &batch{commit: kadm.Offsets{}}
	fetches.EachPartition(func(p kgo.FetchTopicPartition) {
		for _, rec := range p.Records {
			end, open := r.remaining[rec.Partition]
			if !open || b.stop {
				continue
			}
			if rec.Offset >= end {
				delete(r.remaining, rec.Partition)
				continue
			}
			if !rec.Attrs.IsControl() && !r.takeRecord(b, rec) {
				continue
			}
			// Taken, or a transaction marker (exactly-once mode wrote
			// it): progress moves past it.
			b.commit.AddOffset(r.dlq, rec.Partition, rec.Offset+1, -1)
			if rec.Offset+1 >= end {
				delete(r.remaining, rec.Partition)
			}
		}
	})
	return b
}

// takeRecord classifies one dead letter into b and counts it; it returns
// false, taking nothing, when the limit is reached: that conversation
// waits for the next run, and so must everything after it in this
// partition (commits are per partition).
func (r *run) takeRecord(b *batch, rec *kgo.Record) bool {
	line, next := classify(rec, r.cfg, r.requests, r.selected)
	if line.Action == "would_redrive" && r.cfg.Limit > 0 && r.rep.Redriven+r.rep.WouldRedrive >= r.cfg.Limit {
		b.stop = true
		return false
	}
	r.rep.Read++
	switch line.Action {
	case "would_redrive":
		if r.cfg.Execute {
			b.out = append(b.out, next)
			line.Action = "redriven"
			r.rep.Redriven++
		} else {
			r.rep.WouldRedrive++
		}
	case "filtered":
		r.rep.Filtered++
	default:
		r.rep.Skipped++
	}
	b.lines = append(b.lines, line)
	return true
}

// finish produces b's requests (with Execute), writes its report lines,
// then commits its progress (with Execute), in that order: progress is
// never ahead of what was produced.
func (r *run) finish(ctx context.Context, b *batch) error {
	if r.cfg.Execute && len(b.out) > 0 {
		if err := r.cl.ProduceSync(ctx, b.out...).FirstErr(); err != nil {
			return fmt.Errorf("redrive: produce: %w (nothing of this batch is committed; a rerun sends it again)", err)
		}
	}
	for _, l := range b.lines {
		if err := r.enc.Encode(l); err != nil {
			return fmt.Errorf("redrive: write report: %w", err)
		}
	}
	if r.cfg.Execute && len(b.commit) > 0 {
		if err := r.adm.CommitAllOffsets(ctx, r.cfg.Group, b.commit); err != nil {
			return fmt.Errorf("redrive: commit progress to group %s: %w (the requests were produced; a rerun would send them again)", r.cfg.Group, err)
		}
	}
	return nil
}

// startOffsets returns where to start reading each partition: the group's
// committed offsets, else (or with FromStart) the partition's start.
func startOffsets(ctx context.Context, adm *kadm.Client, cfg Config, dlq string) (map[int32]int64, error) {
	firsts, err := adm.ListStartOffsets(ctx, dlq)
	if err == nil {
		err = firsts.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("redrive: start offsets of %s: %w", dlq, err)
	}
	out := map[int32]int64{}
	firsts.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	if cfg.FromStart {
		return out, nil
	}
	committed, err := adm.FetchOffsets(ctx, cfg.Group)
	if errors.Is(err, kerr.GroupIDNotFound) { // a group that never committed
		return out, nil
	}
	if err != nil {
		return nil, fmt.Errorf("redrive: offsets of group %s: %w", cfg.Group, err)
	}
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == dlq && o.Err == nil && o.At > out[o.Partition] {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// classify decides what to do with one dead letter and builds the request
// record to produce when it is to be re-driven.
func classify(rec *kgo.Record, cfg Config, requests, selected map[string]bool) (*Line, *kgo.Record) {
	line := &Line{Partition: rec.Partition, Offset: rec.Offset, ConversationID: string(rec.Key)}
	dl, src, err := envelope.DecodeDeadLetter(rec)
	if err != nil {
		line.Action, line.Error = "undecodable", err.Error()
		return line, nil
	}
	line.Reason, line.Detail, line.RequestID = dl.GetReason(), dl.GetDetail(), dl.GetRequestId()
	line.Source = fmt.Sprintf("%s/%d/%d", src.Topic, src.Partition, src.Offset)
	line.FailedAt = dl.GetFailedAt().AsTime()
	if (len(cfg.Reasons) > 0 && !slices.Contains(cfg.Reasons, dl.GetReason())) ||
		(len(selected) > 0 && !selected[string(src.Key)]) {
		line.Action = "filtered"
		return line, nil
	}
	if !requests[src.Topic] {
		line.Action, line.Error = "not_a_request", "the source topic is not a requests topic"
		return line, nil
	}
	req, err := envelope.DecodeRequest(src)
	if err != nil {
		line.Action, line.Error = "undecodable", err.Error()
		return line, nil
	}
	if req.Metadata == nil {
		req.Metadata = map[string]string{}
	}
	req.Metadata["redrive_of"] = req.GetRequestId()
	req.RequestId = uuid.Must(uuid.NewV7()).String()
	req.AcceptedAt = timestamppb.Now()
	req.Deadline = nil
	if err := envelope.Validate(req); err != nil { // e.g. metadata now over its limit
		line.Action, line.Error = "undecodable", err.Error()
		return line, nil
	}
	next, err := envelope.EncodeRequest(src.Topic, req)
	if err != nil {
		line.Action, line.Error = "undecodable", err.Error()
		return line, nil
	}
	line.Action, line.NewRequestID = "would_redrive", req.GetRequestId()
	return line, next
}
