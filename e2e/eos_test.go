package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestExactlyOnceStreamsShowOnlyCommitted: router-worker --exactly-once is
// killed with SIGKILL while one of its transactions is open with terminal
// results written but not committed. Clients streaming every conversation
// from egress never see those results (the transaction aborts when it
// times out), and see exactly one terminal result per request: the
// committed one of the redo.
func TestExactlyOnceStreamsShowOnlyCommitted(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	t.Parallel() // waits out a transaction timeout
	exactlyOnceStreams(t, apptest.StackOptions{})
}

// txnOracle reads the results topic read_uncommitted with the transaction
// markers, on its own (not with the code under test): which terminal
// results each transaction carried and how it ended. It calls trigger with
// the producer ID of every transactional terminal result as it appears.
type txnOracle struct {
	mu        sync.Mutex
	open      map[int64][]string         // producer ID -> "request@completed_at" of its open transaction
	committed map[string][]string        // request ID -> completed_at of its committed terminal results
	aborted   map[string]map[string]bool // request ID -> completed_at of terminal results whose transaction aborted
	ends      map[int64]map[string]bool  // producer ID -> outcomes of its transactions ("commit", "abort")
	trigger   func(producerID int64)
}

func completedAt(t *pb.Timings) string {
	return t.GetCompletedAt().AsTime().Format(time.RFC3339Nano)
}

func (o *txnOracle) run(ctx context.Context, t *testing.T, s *apptest.Stack) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...), kgo.ConsumeTopics(s.Topic("results")),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.KeepControlRecords(), kgo.FetchMaxWait(100*time.Millisecond))
	if err != nil {
		t.Error(err)
		return
	}
	defer cl.Close()
	for ctx.Err() == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if o.add(t, rec) && o.trigger != nil {
				o.trigger(rec.ProducerID)
			}
		})
	}
}

// add takes the next record; true for a transactional terminal result.
func (o *txnOracle) add(t *testing.T, rec *kgo.Record) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if rec.Attrs.IsControl() {
		var key kmsg.ControlRecordKey
		if key.ReadFrom(rec.Key) != nil {
			return false
		}
		how := map[kmsg.ControlRecordKeyType]string{kmsg.ControlRecordKeyTypeCommit: "commit", kmsg.ControlRecordKeyTypeAbort: "abort"}[key.Type]
		if o.ends[rec.ProducerID] == nil {
			o.ends[rec.ProducerID] = map[string]bool{}
		}
		o.ends[rec.ProducerID][how] = true
		for _, v := range o.open[rec.ProducerID] {
			id, at, _ := strings.Cut(v, "@")
			if how == "commit" {
				o.committed[id] = append(o.committed[id], at)
			} else {
				if o.aborted[id] == nil {
					o.aborted[id] = map[string]bool{}
				}
				o.aborted[id][at] = true
			}
		}
		delete(o.open, rec.ProducerID)
		return false
	}
	res, err := envelope.DecodeResult(rec)
	if err != nil || res.GetChunk() != nil {
		return false
	}
	if !rec.Attrs.IsTransactional() {
		t.Errorf("terminal result of %s outside a transaction with --exactly-once", res.GetRequestId())
		return false
	}
	o.open[rec.ProducerID] = append(o.open[rec.ProducerID], res.GetRequestId()+"@"+completedAt(res.GetFinal().GetTimings()))
	return true
}

// sseClient is one conversation's SSE client: the terminal results it saw,
// by request, as completed_at.
type sseClient struct {
	mu    sync.Mutex
	terms map[string][]string
}

func (c *sseClient) follow(ctx context.Context, t *testing.T, url string) {
	last := ""
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		err := apptest.ReadSSE(ctx, url, last, nil, func(ev apptest.Event) bool {
			if ev.Name == "end" {
				return false
			}
			last = ev.ID
			if ev.Name != "result" && ev.Name != "error" {
				return true
			}
			var a pb.Answer
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal([]byte(ev.Data), &a); err != nil {
				t.Errorf("result event %q: %v", ev.Data, err)
				return true
			}
			c.mu.Lock()
			c.terms[a.GetRequestId()] = append(c.terms[a.GetRequestId()], completedAt(a.GetFinal().GetTimings()))
			c.mu.Unlock()
			return true
		})
		if ctx.Err() != nil {
			return
		}
		t.Logf("%s: stream ended (%v); resuming", url, err)
		time.Sleep(100 * time.Millisecond)
	}
}

func exactlyOnceStreams(t *testing.T, base apptest.StackOptions) {
	base.Routers, base.ModelLatency, base.ModelJitter = 1, 20*time.Millisecond, 10*time.Millisecond
	base.RouterArgs = []string{"--max-in-flight", "64", "--exactly-once", "--session-timeout", "6s"}
	s := apptest.StartStack(t, bin, base)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	l := load{convs: 20, rounds: 40, pause: 100 * time.Millisecond, tenant: "dev", stream: true} // the stream clients' tenant
	want := l.convs * l.rounds

	// The kill: armed while a router-worker runs, fired by the oracle at
	// the first transactional terminal result it sees. The transaction may
	// still commit (the worker got to EndTxn first); then the next worker
	// is armed, up to maxKills.
	const maxKills = 6
	var (
		kmu       sync.Mutex
		armed     bool
		killedPID = map[int64]bool{}
		kills     int
		needStart bool
		current   = s.Routers[0]
	)
	o := &txnOracle{open: map[int64][]string{}, committed: map[string][]string{}, aborted: map[string]map[string]bool{},
		ends: map[int64]map[string]bool{}}
	o.trigger = func(pid int64) {
		kmu.Lock()
		defer kmu.Unlock()
		if !armed {
			return
		}
		current.Kill()
		armed, needStart = false, true
		// The next marker of pid ends the transaction open at the kill.
		o.mu.Lock()
		delete(o.ends, pid)
		o.mu.Unlock()
		killedPID[pid] = true
		kills++
	}
	// outcome: whether a killed transaction aborted (caught), and whether
	// one has not ended yet. kmu is held.
	outcome := func() (caught, pending bool) {
		o.mu.Lock()
		defer o.mu.Unlock()
		for pid := range killedPID {
			caught = caught || o.ends[pid]["abort"]
			pending = pending || len(o.ends[pid]) == 0 || len(o.open[pid]) > 0
		}
		return caught, pending
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	wg.Go(func() { o.run(ctx, t, s) })
	clients := make([]*sseClient, l.convs)
	for c := range clients {
		clients[c] = &sseClient{terms: map[string][]string{}}
		url := fmt.Sprintf("%s/v1/conversations/load-%03d/events", s.EgressURL, c)
		wg.Go(func() { clients[c].follow(ctx, t, url) })
	}
	time.Sleep(500 * time.Millisecond) // the streams open before the load
	l.run(ctx, t, s, func(round int) {
		kmu.Lock()
		defer kmu.Unlock()
		if needStart {
			needStart = false
			current = s.StartRouter() //nolint:contextcheck // bounded by the test's own context inside StartRouter
		}
		// Armed again only once the last kill's transaction has ended
		// and it committed.
		if caught, pending := outcome(); round >= 2 && !armed && kills < maxKills && !caught && !pending {
			armed = true
		}
	})
	kmu.Lock()
	armed = false
	if needStart {
		needStart = false
		s.StartRouter() //nolint:contextcheck // as above
	}
	kmu.Unlock()

	// Every request has its committed terminal result, and the killed
	// transaction has ended (it aborts when it times out).
	err := apptest.Wait(3*time.Minute, func() error {
		o.mu.Lock()
		n := len(o.committed)
		o.mu.Unlock()
		if n < want {
			return fmt.Errorf("%d of %d requests have a committed terminal result", n, want)
		}
		kmu.Lock()
		defer kmu.Unlock()
		o.mu.Lock()
		defer o.mu.Unlock()
		for pid := range killedPID {
			if len(o.ends[pid]) == 0 || len(o.open[pid]) > 0 {
				return fmt.Errorf("the killed worker's transaction (producer %d) has not ended", pid)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	o.mu.Lock()
	nAborted := 0
	for _, ats := range o.aborted {
		nAborted += len(ats)
	}
	for id, ats := range o.committed {
		if len(ats) != 1 {
			t.Errorf("%s: %d committed terminal results, want 1", id, len(ats))
		}
	}
	o.mu.Unlock()
	kmu.Lock()
	t.Logf("%d kills; %d terminal results in transactions that aborted", kills, nAborted)
	kmu.Unlock()
	kmu.Lock()
	caught, _ := outcome()
	kmu.Unlock()
	if !caught {
		t.Fatalf("no kill caught a transaction open with terminal results in %d tries: the test proves nothing", kills)
	}

	// Each client saw every request's committed terminal result, once,
	// and never one that aborted.
	err = apptest.Wait(time.Minute, func() error {
		for c, cl := range clients {
			cl.mu.Lock()
			n := len(cl.terms)
			cl.mu.Unlock()
			if n < l.rounds {
				return fmt.Errorf("client of load-%03d saw %d of %d terminal results", c, n, l.rounds)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	cancel()
	wg.Wait()
	seenAborted := 0
	for _, cl := range clients {
		for id, ats := range cl.terms {
			if o.aborted[id][ats[0]] {
				seenAborted++
			}
			if len(ats) != 1 || len(o.committed[id]) != 1 || ats[0] != o.committed[id][0] {
				t.Errorf("%s: the client saw terminal results completed at %q, want once the committed one %q", id, ats, o.committed[id])
			}
		}
	}
	if seenAborted > 0 {
		t.Errorf("clients saw %d terminal results of aborted transactions", seenAborted)
	}
}
