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
	var rep Report
	if cfg.Topics == nil {
		return rep, errors.New("redrive: topics spec is required")
	}
	if err := cfg.Kafka.Validate(); err != nil {
		return rep, err
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
	if cfg.Limit < 0 {
		return rep, errors.New("redrive: limit must not be negative")
	}
	dlq := cfg.Topics.Name(topicspec.DeadLetter)
	requests := map[string]bool{
		cfg.Topics.Name(topicspec.RequestsInteractive): true,
		cfg.Topics.Name(topicspec.RequestsBatch):       true,
	}

	// Control records are kept so that a partition ending in a transaction
	// marker is still read to its end; aborted dead letters are skipped.
	cl, err := kgo.NewClient(append(cfg.Kafka.Opts(cfg.Logger),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0),
		kgo.KeepControlRecords(), kgo.FetchIsolationLevel(kgo.ReadCommitted()))...)
	if err != nil {
		return rep, fmt.Errorf("redrive: kafka client: %w", err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)

	ends, err := adm.ListEndOffsets(ctx, dlq)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return rep, fmt.Errorf("redrive: end offsets of %s: %w", dlq, err)
	}
	starts, err := startOffsets(ctx, adm, cfg, dlq)
	if err != nil {
		return rep, err
	}
	consume := map[int32]kgo.Offset{}
	remaining := map[int32]int64{} // partition -> end offset still to reach
	ends.Each(func(o kadm.ListedOffset) {
		if from := starts[o.Partition]; from < o.Offset {
			consume[o.Partition] = kgo.NewOffset().At(from)
			remaining[o.Partition] = o.Offset
		}
	})
	if len(consume) == 0 {
		return rep, nil
	}
	cl.AddConsumePartitions(map[string]map[int32]kgo.Offset{dlq: consume})

	selected := map[string]bool{}
	for _, c := range cfg.Conversations {
		selected[c] = true
	}
	enc := json.NewEncoder(cfg.Out)
	for len(remaining) > 0 {
		fetches := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return rep, err
		}
		if err := fetches.Err0(); err != nil {
			return rep, fmt.Errorf("redrive: fetch %s: %w", dlq, err)
		}
		var out []*kgo.Record
		var lines []*Line
		commit := kadm.Offsets{}
		stop := false
		fetches.EachPartition(func(p kgo.FetchTopicPartition) {
			for _, rec := range p.Records {
				end, open := remaining[rec.Partition]
				if !open || stop {
					continue
				}
				if rec.Offset >= end {
					delete(remaining, rec.Partition)
					continue
				}
				if rec.Attrs.IsControl() { // a transaction marker (exactly-once mode wrote it)
					commit.AddOffset(dlq, rec.Partition, rec.Offset+1, -1)
					if rec.Offset+1 >= end {
						delete(remaining, rec.Partition)
					}
					continue
				}
				rep.Read++
				line, next := classify(rec, cfg, requests, selected)
				if line.Action == "would_redrive" && cfg.Limit > 0 && rep.Redriven+rep.WouldRedrive >= cfg.Limit {
					// Over the limit: this conversation waits for the next
					// run, and so must everything after it in this partition
					// (commits are per partition).
					stop = true
					rep.Read--
					continue
				}
				switch line.Action {
				case "would_redrive":
					if cfg.Execute {
						out = append(out, next)
						line.Action = "redriven"
						rep.Redriven++
					} else {
						rep.WouldRedrive++
					}
				case "filtered":
					rep.Filtered++
				default:
					rep.Skipped++
				}
				lines = append(lines, line)
				commit.AddOffset(dlq, rec.Partition, rec.Offset+1, -1)
				if rec.Offset+1 >= end {
					delete(remaining, rec.Partition)
				}
			}
		})
		if cfg.Execute && len(out) > 0 {
			if err := cl.ProduceSync(ctx, out...).FirstErr(); err != nil {
				return rep, fmt.Errorf("redrive: produce: %w (nothing of this batch is committed; a rerun sends it again)", err)
			}
		}
		for _, l := range lines {
			if err := enc.Encode(l); err != nil {
				return rep, fmt.Errorf("redrive: write report: %w", err)
			}
		}
		if cfg.Execute && len(commit) > 0 {
			if err := adm.CommitAllOffsets(ctx, cfg.Group, commit); err != nil {
				return rep, fmt.Errorf("redrive: commit progress to group %s: %w (the requests were produced; a rerun would send them again)", cfg.Group, err)
			}
		}
		if stop {
			cfg.Logger.Info("limit reached", "limit", cfg.Limit)
			break
		}
	}
	return rep, nil
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
