package keyorder

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newCluster(t *testing.T, partitions int32, topics ...string) *kfake.Cluster {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(partitions, topics...),
		kfake.BrokerConfigs(map[string]string{"group.min.session.timeout.ms": "100"}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// produce writes n records per topic: keys key-0..key-(keys-1), and as value
// the record's sequence number within its key ("key-3/17"). Records go out
// in batches of batch, with pause between batches, so that some arrive
// while earlier records of their key are in flight.
func produce(t *testing.T, c *kfake.Cluster, topics []string, keys, n int, rng *rand.Rand) int {
	return produceSlowly(t, c, topics, keys, n, n*len(topics), 0, rng)
}

func produceSlowly(t *testing.T, c *kfake.Cluster, topics []string, keys, n, batch int, pause time.Duration, rng *rand.Rand) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ProducerLinger(0))
	if err != nil {
		t.Error(err)
		return 0
	}
	defer cl.Close()
	seq := map[string]int{}
	var recs []*kgo.Record
	for range n {
		for _, topic := range topics {
			key := fmt.Sprintf("%s-key-%d", topic, rng.IntN(keys))
			recs = append(recs, &kgo.Record{Topic: topic, Key: []byte(key), Value: []byte(key + "/" + strconv.Itoa(seq[key]))})
			seq[key]++
		}
	}
	for len(recs) > 0 {
		b := recs[:min(batch, len(recs))]
		recs = recs[len(b):]
		if err := cl.ProduceSync(t.Context(), b...).FirstErr(); err != nil {
			t.Error(err)
			return 0
		}
		time.Sleep(pause)
	}
	return n * len(topics)
}

// checker is a handler that verifies the engine's promises as it runs.
type checker struct {
	t        *testing.T
	rng      func() float64
	failRate float64
	maxSleep time.Duration

	mu        sync.Mutex
	active    map[string]bool           // key -> a record is in the handler
	order     map[string][]int          // key -> sequence numbers, in completion order
	finished  map[string]map[int64]bool // topic/partition -> offsets
	inflight  map[string]int            // topic -> now
	maxFlight map[string]int            // topic -> most at once
	total     int
	maxTotal  int
	done      atomic.Int64 // distinct records finished
}

func newChecker(t *testing.T, seed uint64) *checker {
	rng := rand.New(rand.NewPCG(seed, seed))
	var mu sync.Mutex
	return &checker{
		t: t, rng: func() float64 { mu.Lock(); defer mu.Unlock(); return rng.Float64() },
		active: map[string]bool{}, order: map[string][]int{}, finished: map[string]map[int64]bool{},
		inflight: map[string]int{}, maxFlight: map[string]int{},
	}
}

func tpKey(topic string, p int32) string { return topic + "/" + strconv.Itoa(int(p)) }

func (c *checker) handle(ctx context.Context, rec *kgo.Record) error {
	key := string(rec.Key)
	c.mu.Lock()
	if c.active[key] {
		c.t.Errorf("key %s: two records in flight at once (offset %d)", key, rec.Offset)
	}
	c.active[key] = true
	c.inflight[rec.Topic]++
	c.total++
	c.maxFlight[rec.Topic] = max(c.maxFlight[rec.Topic], c.inflight[rec.Topic])
	c.maxTotal = max(c.maxTotal, c.total)
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		c.active[key] = false
		c.inflight[rec.Topic]--
		c.total--
		c.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(time.Duration(c.rng() * float64(c.maxSleep))):
	}
	if c.rng() < c.failRate {
		return errors.New("injected failure")
	}
	_, s, _ := strings.Cut(string(rec.Value), "/")
	n, _ := strconv.Atoi(s)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.order[key] = append(c.order[key], n)
	tp := tpKey(rec.Topic, rec.Partition)
	if c.finished[tp] == nil {
		c.finished[tp] = map[int64]bool{}
	}
	if !c.finished[tp][rec.Offset] {
		c.finished[tp][rec.Offset] = true
		c.done.Add(1)
	}
	return nil
}

// checkOrder: per key, first completions come in sequence order.
func (c *checker) checkOrder() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for key, seqs := range c.order {
		next := 0
		for _, s := range seqs {
			switch {
			case s == next:
				next++
			case s < next: // a repeat of finished work (at-least-once)
			default:
				c.t.Errorf("key %s: record %d finished before record %d (completions %v)", key, s, next, seqs)
				return
			}
		}
	}
}

// checkCommitted: a committed offset never passes unfinished work, and
// the metadata claims only finished offsets.
func (c *checker) checkCommitted(ctx context.Context, adm *kadm.Client, group string) {
	offs, err := adm.FetchOffsets(ctx, group)
	if err != nil {
		return // the cluster is busy rebalancing; the next check will do
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	offs.Each(func(o kadm.OffsetResponse) {
		fin := c.finished[tpKey(o.Topic, o.Partition)]
		for off := int64(0); off < o.At; off++ {
			if !fin[off] {
				c.t.Errorf("%s/%d: committed %d but offset %d never finished", o.Topic, o.Partition, o.At, off)
				return
			}
		}
		fs, err := decodeMetadata(o.At, o.Metadata)
		if err != nil {
			c.t.Errorf("%s/%d: metadata %q: %v", o.Topic, o.Partition, o.Metadata, err)
			return
		}
		for _, r := range fs.ranges {
			for off := r[0]; off < r[1]; off++ {
				if !fin[off] {
					c.t.Errorf("%s/%d: metadata marks %d finished; it is not", o.Topic, o.Partition, off)
					return
				}
			}
		}
	})
}

func startEngine(t *testing.T, c *kfake.Cluster, cfg Config) (stop func()) {
	t.Helper()
	return startEngineWith(t, c, cfg, nil)
}

// startEngineWith is startEngine with a hook that sees the engine before it
// runs.
func startEngineWith(t *testing.T, c *kfake.Cluster, cfg Config, created func(*Engine)) (stop func()) {
	t.Helper()
	// A short fetch wait unless the test sets its own (a later option wins).
	cfg.ClientOpts = append([]kgo.Opt{kgo.FetchMaxWait(100 * time.Millisecond)}, cfg.ClientOpts...)
	cfg.ClientOpts = append(cfg.ClientOpts, kgo.SeedBrokers(c.ListenAddrs()...),
		kgo.SessionTimeout(2*time.Second), kgo.HeartbeatInterval(200*time.Millisecond),
		kgo.RebalanceTimeout(5*time.Second))
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if created != nil {
		created(e)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := e.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(60 * time.Second):
				t.Errorf("engine did not stop within 60s")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// TestRandomised runs random keys, handler times, failures and rebalances
// (members joining and leaving) over in-process Kafka and checks that every
// record finishes, each key's order holds, no key runs twice at once, and a
// committed offset never passes unfinished work.
func TestRandomised(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			rng := rand.New(rand.NewPCG(seed, 99))
			topics := []string{"interactive", "batch"}
			c := newCluster(t, 6, topics...)
			const total = 1200
			go produceSlowly(t, c, topics, 40, total/len(topics), 20, 10*time.Millisecond, rand.New(rand.NewPCG(seed, 3)))
			chk := newChecker(t, seed)
			chk.failRate, chk.maxSleep = 0.05, 30*time.Millisecond
			cfg := Config{
				Group: "g", Topics: topics, Handler: chk.handle, MaxInFlight: 16,
				TopicLimits: map[string]int{"batch": 8}, HighMark: 40, CommitInterval: 50 * time.Millisecond,
				RetryBackoff: time.Millisecond, MaxRetryBackoff: 5 * time.Millisecond, RevokeTimeout: 2 * time.Second,
			}
			adm := kadm.NewClient(mustClient(t, c))
			ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
			defer cancel()

			var stops []func()
			stops = append(stops, startEngine(t, c, cfg))
			joins, leaves := 0, 0
			for step := 0; chk.done.Load() < total; step++ {
				if ctx.Err() != nil {
					t.Fatalf("only %d of %d records finished in time", chk.done.Load(), total)
				}
				time.Sleep(time.Duration(50+rng.IntN(150)) * time.Millisecond)
				chk.checkCommitted(ctx, adm, "g")
				switch {
				case step < 16 && step%4 == 0 && len(stops) < 3:
					stops = append(stops, startEngine(t, c, cfg))
					joins++
				case step < 16 && step%4 == 2 && len(stops) > 1:
					i := rng.IntN(len(stops))
					stops[i]()
					stops = append(stops[:i], stops[i+1:]...)
					leaves++
				}
			}
			t.Logf("%d records; %d members joined and %d left while they ran", total, joins, leaves)
			if joins == 0 || leaves == 0 {
				t.Errorf("no rebalance happened while records ran: the test proves little")
			}
			for _, stop := range stops {
				stop()
			}
			chk.checkOrder()
			chk.checkCommitted(ctx, adm, "g")
			// After a clean stop, everything is committed: the watermark is the end.
			ends, err := adm.ListEndOffsets(ctx, topics...)
			if err != nil {
				t.Fatal(err)
			}
			committed, err := adm.FetchOffsets(ctx, "g")
			if err != nil {
				t.Fatal(err)
			}
			ends.Each(func(o kadm.ListedOffset) {
				got, _ := committed.Lookup(o.Topic, o.Partition)
				if o.Offset > 0 && got.At != o.Offset {
					t.Errorf("%s/%d: committed %d after a clean stop, want the end %d", o.Topic, o.Partition, got.At, o.Offset)
				}
			})
			if chk.maxFlight["batch"] > 3*8 {
				t.Errorf("batch had %d records in flight at once; its limit is 8 per engine and at most 3 engines ran", chk.maxFlight["batch"])
			}
		})
	}
}

func mustClient(t *testing.T, c *kfake.Cluster, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	cl, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return cl
}

// TestBudgets: with one engine, the batch lane never exceeds its limit, the
// total never exceeds MaxInFlight, and interactive records run while a
// batch flood waits.
func TestBudgets(t *testing.T) {
	topics := []string{"interactive", "batch"}
	c := newCluster(t, 3, topics...)
	rng := rand.New(rand.NewPCG(5, 5))
	produce(t, c, []string{"batch"}, 200, 400, rng)
	chk := newChecker(t, 5)
	chk.maxSleep = 20 * time.Millisecond
	var interactiveWhileBatchBusy atomic.Int64
	handler := func(ctx context.Context, rec *kgo.Record) error {
		if rec.Topic == "interactive" {
			chk.mu.Lock()
			if chk.inflight["batch"] == 3 {
				interactiveWhileBatchBusy.Add(1)
			}
			chk.mu.Unlock()
		}
		return chk.handle(ctx, rec)
	}
	startEngine(t, c, Config{Group: "g", Topics: topics, Handler: handler, MaxInFlight: 5, TopicLimits: map[string]int{"batch": 3}})
	// The batch flood is under way: batch uses its whole limit.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		chk.mu.Lock()
		busy := chk.inflight["batch"] == 3
		chk.mu.Unlock()
		if busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the batch lane never used its whole limit")
		}
	}
	produce(t, c, []string{"interactive"}, 50, 50, rng)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	for chk.done.Load() < 450 {
		if ctx.Err() != nil {
			t.Fatalf("%d of 450 finished in time", chk.done.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	chk.mu.Lock()
	defer chk.mu.Unlock()
	if chk.maxFlight["batch"] > 3 || chk.maxTotal > 5 {
		t.Errorf("in flight at most: batch %d (limit 3), total %d (limit 5)", chk.maxFlight["batch"], chk.maxTotal)
	}
	if chk.maxFlight["batch"] < 3 || interactiveWhileBatchBusy.Load() == 0 {
		t.Errorf("batch peaked at %d; interactive ran %d times while batch used its whole limit: want the reservation exercised",
			chk.maxFlight["batch"], interactiveWhileBatchBusy.Load())
	}
}
