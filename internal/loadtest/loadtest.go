// Package loadtest drives load through Switchboard and accounts for every
// request: it produces requests straight to a requests topic at a fixed
// rate (open loop: each request has an intended send time, and latency is
// measured from it, so a stalled pipeline cannot hide its delay), reads the
// results topic, and reports achieved throughput, end-to-end latency
// percentiles, pipeline overhead (end-to-end minus the model's own time, as
// the router measured it), lost, duplicated and out-of-order answers, and
// the CPU time a given process spent per request.
package loadtest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Config describes one run.
type Config struct {
	// ClientOpts reach the cluster.
	ClientOpts []kgo.Opt
	// RequestsTopic and ResultsTopic are the full topic names.
	RequestsTopic, ResultsTopic string
	// Lane is written into every request. Default interactive.
	Lane string
	// Model names the model. Default "sim".
	Model string
	// Rate is the offered load in requests per second. Required.
	Rate float64
	// Duration is how long requests are sent. Required.
	Duration time.Duration
	// Warmup excludes requests sent in the first Warmup from the figures.
	Warmup time.Duration
	// Conversations share the load round-robin. Default 1000.
	Conversations int
	// Drain is how long to wait for answers after the last send. Default 30s.
	Drain time.Duration
	// CPUPIDs are processes whose CPU time per request is reported.
	CPUPIDs map[string]int
	// RunID prefixes request and conversation IDs. Default: the start time.
	RunID string
	// Logger receives progress lines.
	Logger *slog.Logger
}

// Report is the outcome of a run.
type Report struct {
	OfferedRate       float64            `json:"offered_rate"`
	AchievedRate      float64            `json:"achieved_rate"`
	Sent              int                `json:"sent"`
	Measured          int                `json:"measured"`
	Answered          int                `json:"answered"`
	Errors            map[string]int     `json:"errors"`
	Lost              int                `json:"lost"`
	Duplicates        int                `json:"duplicates"`
	OrderViolations   int                `json:"order_violations"`
	LatencyMS         Percentiles        `json:"latency_ms"`
	ModelMS           Percentiles        `json:"model_ms"`
	OverheadMS        Percentiles        `json:"overhead_ms"`
	CPUPerRequestMS   map[string]float64 `json:"cpu_per_request_ms"`
	MeasuredSeconds   float64            `json:"measured_seconds"`
	SendLagMaxMS      float64            `json:"send_lag_max_ms"`
	ProduceErrors     int                `json:"produce_errors"`
	ConversationCount int                `json:"conversations"`
}

// Percentiles of a distribution, in milliseconds.
type Percentiles struct {
	P50, P90, P99, P999, Max float64
}

func percentiles(h *hdrhistogram.Histogram) Percentiles {
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return Percentiles{ms(h.ValueAtQuantile(50)), ms(h.ValueAtQuantile(90)), ms(h.ValueAtQuantile(99)),
		ms(h.ValueAtQuantile(99.9)), ms(h.Max())}
}

type sent struct {
	intended time.Time
	conv     int
	seq      int
	measured bool
}

// Run executes the run described by cfg.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if cfg.Rate <= 0 || cfg.Duration <= 0 {
		return nil, errors.New("loadtest: rate and duration must be positive")
	}
	if cfg.Lane == "" {
		cfg.Lane = envelope.LaneInteractive
	}
	if cfg.Model == "" {
		cfg.Model = "sim"
	}
	if cfg.Conversations == 0 {
		cfg.Conversations = 1000
	}
	if cfg.Drain == 0 {
		cfg.Drain = 30 * time.Second
	}
	if cfg.RunID == "" {
		cfg.RunID = fmt.Sprintf("lt%d", time.Now().Unix())
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}

	prod, err := kgo.NewClient(append(cfg.ClientOpts, kgo.ProducerLinger(2*time.Millisecond), kgo.MaxBufferedRecords(1<<20))...)
	if err != nil {
		return nil, err
	}
	defer prod.Close()
	// The reader starts at the current end of every results partition.
	ends, err := kadm.NewClient(prod).ListEndOffsets(ctx, cfg.ResultsTopic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("loadtest: results topic: %w", err)
	}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { start[o.Partition] = kgo.NewOffset().At(o.Offset) })
	cons, err := kgo.NewClient(append(cfg.ClientOpts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{cfg.ResultsTopic: start}))...)
	if err != nil {
		return nil, err
	}
	defer cons.Close()

	var mu sync.Mutex
	reqs := map[string]*sent{}
	answered := map[string]int{}
	nextSeq := make([]int, cfg.Conversations)
	rep := &Report{OfferedRate: cfg.Rate, Errors: map[string]int{}, ConversationCount: cfg.Conversations, CPUPerRequestMS: map[string]float64{}}
	lat := hdrhistogram.New(1, 600_000_000, 3) // microseconds
	model := hdrhistogram.New(1, 600_000_000, 3)
	over := hdrhistogram.New(1, 600_000_000, 3)
	var firstMeasured, lastMeasured time.Time

	readCtx, stopReading := context.WithCancel(ctx)
	readDone := make(chan struct{})
	defer func() { stopReading(); <-readDone }()
	go func() {
		defer close(readDone)
		for {
			fetches := cons.PollFetches(readCtx)
			if readCtx.Err() != nil {
				return
			}
			now := time.Now()
			fetches.EachRecord(func(rec *kgo.Record) {
				res, err := envelope.DecodeResult(rec)
				if err != nil || res.GetChunk() != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				s := reqs[res.GetRequestId()]
				if s == nil {
					return // not ours
				}
				answered[res.GetRequestId()]++
				if answered[res.GetRequestId()] > 1 {
					rep.Duplicates++
					return
				}
				// Out of order: the answer to an earlier message arrives
				// after the answer to a later one. (A missing answer is
				// counted as lost, not here.)
				if s.seq < nextSeq[s.conv] {
					rep.OrderViolations++
				}
				nextSeq[s.conv] = max(nextSeq[s.conv], s.seq+1)
				if e := res.GetError(); e != nil {
					rep.Errors[e.GetCode()]++
				}
				if !s.measured {
					return
				}
				rep.Answered++
				if firstMeasured.IsZero() {
					firstMeasured = now
				}
				lastMeasured = now
				e2e := now.Sub(s.intended)
				lat.RecordValue(max(1, e2e.Microseconds()))
				if t := res.GetFinal().GetTimings(); t != nil && t.GetDispatchedAt() != nil && t.GetCompletedAt() != nil {
					m := t.GetCompletedAt().AsTime().Sub(t.GetDispatchedAt().AsTime())
					model.RecordValue(max(1, m.Microseconds()))
					over.RecordValue(max(1, (e2e - m).Microseconds()))
				}
			})
		}
	}()

	var cpuMeasureStart map[string]time.Duration
	begin := time.Now()
	interval := time.Duration(float64(time.Second) / cfg.Rate)
	total := int(cfg.Rate * cfg.Duration.Seconds())
	progress := time.NewTicker(5 * time.Second)
	defer progress.Stop()
	for i := range total {
		intended := begin.Add(time.Duration(i) * interval)
		if d := time.Until(intended); d > 0 {
			select {
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-time.After(d):
			}
		} else if lag := -d; lag.Seconds()*1000 > rep.SendLagMaxMS {
			rep.SendLagMaxMS = lag.Seconds() * 1000
		}
		measured := intended.Sub(begin) >= cfg.Warmup
		if measured && cpuMeasureStart == nil {
			cpuMeasureStart = cpuTimes(cfg.CPUPIDs)
		}
		conv := i % cfg.Conversations
		mu.Lock()
		seq := 0
		if i >= cfg.Conversations {
			seq = i / cfg.Conversations
		}
		id := fmt.Sprintf("%s-%d-%d", cfg.RunID, conv, seq)
		reqs[id] = &sent{intended: intended, conv: conv, seq: seq, measured: measured}
		if measured {
			rep.Measured++
		}
		rep.Sent++
		mu.Unlock()
		rec, err := envelope.EncodeRequest(cfg.RequestsTopic, &pb.Request{
			RequestId: id, ConversationId: fmt.Sprintf("%s-c%d", cfg.RunID, conv), Lane: cfg.Lane, Model: cfg.Model,
			MaxTokens: 16, AcceptedAt: timestamppb.New(intended),
			Messages: []*pb.Message{{Role: "user", Content: fmt.Sprintf("load test message %d of conversation %d", seq, conv)}},
		})
		if err != nil {
			return nil, err
		}
		prod.Produce(ctx, rec, func(_ *kgo.Record, err error) {
			if err != nil {
				mu.Lock()
				rep.ProduceErrors++
				mu.Unlock()
			}
		})
		select {
		case <-progress.C:
			mu.Lock()
			cfg.Logger.Info("progress", "sent", rep.Sent, "answered", rep.Answered, "elapsed", time.Since(begin).Round(time.Second))
			mu.Unlock()
		default:
		}
	}
	sendEnd := time.Now()
	cpuSendEnd := cpuTimes(cfg.CPUPIDs)

	// Drain: wait until everything is answered or Drain passes.
	deadline := time.Now().Add(cfg.Drain)
	for time.Now().Before(deadline) {
		mu.Lock()
		done := len(answered) >= rep.Sent
		mu.Unlock()
		if done {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	stopReading()
	<-readDone

	mu.Lock()
	defer mu.Unlock()
	rep.Lost = rep.Sent - len(answered)
	window := sendEnd.Sub(begin.Add(cfg.Warmup))
	if !lastMeasured.IsZero() {
		window = lastMeasured.Sub(firstMeasured)
	}
	rep.MeasuredSeconds = window.Seconds()
	if window > 0 {
		rep.AchievedRate = float64(rep.Answered) / window.Seconds()
	}
	rep.LatencyMS, rep.ModelMS, rep.OverheadMS = percentiles(lat), percentiles(model), percentiles(over)
	measuredSent := rep.Measured
	for name, end := range cpuSendEnd {
		if s, ok := cpuMeasureStart[name]; ok && measuredSent > 0 {
			rep.CPUPerRequestMS[name] = float64((end - s).Microseconds()) / 1000 / float64(measuredSent)
		}
	}
	return rep, nil
}
