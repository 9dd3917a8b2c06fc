package loadtest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Topics are the full names of the topics the load test touches.
type Topics struct {
	Interactive, Batch, Results, DeadLetter string
}

// withPrefix returns t with the prefix from of every name replaced by to.
func (t Topics) withPrefix(from, to string) Topics {
	re := func(n string) string { return to + strings.TrimPrefix(n, from) }
	return Topics{Interactive: re(t.Interactive), Batch: re(t.Batch), Results: re(t.Results), DeadLetter: re(t.DeadLetter)}
}

func (t Topics) requests(lane string) string {
	if lane == envelope.LaneBatch {
		return t.Batch
	}
	return t.Interactive
}

// kafkaDriver produces requests straight to the lane's requests topic, as
// a direct producer would (protobuf value, keyed by conversation).
type kafkaDriver struct {
	cl     *kgo.Client
	topics Topics
	tenant string
}

func newKafkaDriver(opts []kgo.Opt, topics Topics, tenant string) (*kafkaDriver, error) {
	cl, err := kgo.NewClient(append(opts, kgo.ProducerLinger(2*time.Millisecond),
		kgo.MaxBufferedRecords(1<<20), kgo.RecordDeliveryTimeout(30*time.Second))...)
	if err != nil {
		return nil, fmt.Errorf("kafka driver: %w", err)
	}
	return &kafkaDriver{cl: cl, topics: topics, tenant: tenant}, nil
}

func (d *kafkaDriver) Name() string { return nameKafka }

func (d *kafkaDriver) Send(ctx context.Context, m Message) error {
	rec, err := envelope.EncodeRequest(d.topics.requests(m.Lane), &pb.Request{
		RequestId: m.ID, ConversationId: m.Conversation, Tenant: d.tenant, Lane: m.Lane, Model: m.Model,
		Stream: m.Stream, MaxTokens: m.MaxTokens, AcceptedAt: timestamppb.Now(),
		Metadata: map[string]string{MetadataKey: m.ID},
		Messages: []*pb.Message{{Role: roleUser, Content: m.Content}},
	})
	if err != nil {
		return &SendError{Code: "encode", Err: err}
	}
	if err := d.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return &SendError{Code: "kafka_produce", Err: err}
	}
	return nil
}

// SendRaw writes a bad record straight to the interactive requests topic.
func (d *kafkaDriver) SendRaw(ctx context.Context, conv string, bad Bad) error {
	rec := badRecord(d.topics.Interactive, conv, bad)
	if rec == nil {
		return &SendError{Code: "unsupported", Err: fmt.Errorf("bad input %s has no Kafka form", bad.Kind)}
	}
	if err := d.cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		return &SendError{Code: "kafka_produce", Err: err}
	}
	return nil
}

func (d *kafkaDriver) Close() { d.cl.Close() }

// kafkaReader reads the results topic from its end at Open, for every
// conversation (Watch has nothing to do).
type kafkaReader struct {
	opts      []kgo.Opt
	topic     string
	cl        *kgo.Client
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
}

func newKafkaReader(opts []kgo.Opt, topics Topics) *kafkaReader {
	return &kafkaReader{opts: opts, topic: topics.Results}
}

func (r *kafkaReader) Name() string { return nameKafka }

func (r *kafkaReader) Open(ctx context.Context, deliver func(Answer)) error {
	start, err := endOffsets(ctx, r.opts, r.topic)
	if err != nil {
		return err
	}
	r.cl, err = kgo.NewClient(append(r.opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{r.topic: start}),
		kgo.FetchMaxWait(100*time.Millisecond))...)
	if err != nil {
		return fmt.Errorf("kafka reader: %w", err)
	}
	ctx, r.cancel = context.WithCancel(ctx)
	r.done = make(chan struct{})
	go func() {
		defer close(r.done)
		for {
			fetches := r.cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			now := time.Now()
			fetches.EachRecord(func(rec *kgo.Record) {
				res, err := envelope.DecodeResult(rec)
				if err != nil {
					return
				}
				if a, ok := answerOf(res, now); ok {
					deliver(a)
				}
			})
		}
	}()
	return nil
}

func (r *kafkaReader) Watch(context.Context, string) error { return nil }

func (r *kafkaReader) Close() {
	r.closeOnce.Do(func() {
		if r.cancel != nil {
			r.cancel()
			<-r.done
			r.cl.Close()
		}
	})
}

// endOffsets returns the current end of every partition of topic.
func endOffsets(ctx context.Context, opts []kgo.Opt, topic string) (map[int32]kgo.Offset, error) {
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err == nil {
		err = ends.Error()
	}
	if err != nil {
		return nil, fmt.Errorf("list end offsets of %s: %w", topic, err)
	}
	start := map[int32]kgo.Offset{}
	ends.Each(func(o kadm.ListedOffset) { start[o.Partition] = kgo.NewOffset().At(o.Offset) })
	if len(start) == 0 {
		return nil, errors.New("topic " + topic + " has no partitions")
	}
	return start, nil
}

// answerOf turns a result into an Answer; results without the loadtest
// metadata are not ours.
func answerOf(res *pb.Result, at time.Time) (Answer, bool) {
	id := res.GetMetadata()[MetadataKey]
	if id == "" {
		return Answer{}, false
	}
	a := Answer{ID: id, RequestID: res.GetRequestId(), Conversation: res.GetConversationId(), Attempt: res.GetAttempt(), At: at}
	switch b := res.GetBody().(type) {
	case *pb.Result_Chunk:
		a.Kind, a.ChunkIndex = Chunk, b.Chunk.GetIndex()
	case *pb.Result_Final:
		a.Kind = Final
		if t := b.Final.GetTimings(); t.GetDispatchedAt() != nil && t.GetCompletedAt() != nil {
			a.ModelTime = t.GetCompletedAt().AsTime().Sub(t.GetDispatchedAt().AsTime())
		}
	case *pb.Result_Error:
		a.Kind, a.ErrorCode = Failed, b.Error.GetCode()
	default:
		return Answer{}, false
	}
	return a, true
}

// deadLetters reads the dead-letter topic from its end at start and
// reports the loadtest IDs (the loadtest-id header of the original record)
// with their reasons.
type deadLetters struct {
	mu     sync.Mutex
	seen   map[string]string // loadtest id -> reason
	cl     *kgo.Client
	cancel context.CancelFunc
	done   chan struct{}
}

// headerLoadtestID marks bad records so their dead letters can be found.
const headerLoadtestID = "loadtest-id"

func startDeadLetters(ctx context.Context, opts []kgo.Opt, topic string) (*deadLetters, error) {
	start, err := endOffsets(ctx, opts, topic)
	if err != nil {
		return nil, err
	}
	d := &deadLetters{seen: map[string]string{}, done: make(chan struct{})}
	d.cl, err = kgo.NewClient(append(opts, kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: start}),
		kgo.FetchMaxWait(100*time.Millisecond))...)
	if err != nil {
		return nil, err
	}
	ctx, d.cancel = context.WithCancel(ctx)
	go func() {
		defer close(d.done)
		for {
			fetches := d.cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return
			}
			fetches.EachRecord(func(rec *kgo.Record) {
				var dl pb.DeadLetter
				if proto.Unmarshal(rec.Value, &dl) != nil {
					return
				}
				for _, h := range dl.GetHeaders() {
					if h.GetKey() == headerLoadtestID {
						d.mu.Lock()
						d.seen[string(h.GetValue())] = dl.GetReason()
						d.mu.Unlock()
					}
				}
			})
		}
	}()
	return d, nil
}

// reason returns the dead-letter reason of the record with loadtest ID id.
func (d *deadLetters) reason(id string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.seen[id]
	return r, ok
}

func (d *deadLetters) close() {
	d.cancel()
	<-d.done
	d.cl.Close()
}
