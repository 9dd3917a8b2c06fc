package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/webhook"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// hookLedger is a webhook receiver that records every call: which event
// (the body's request ID), the headers that identify it, and whether it
// was answered 2xx. It checks the signature of every call and the
// conversation order as the calls arrive: an event's call may start only
// after the conversation's previous event was answered 2xx.
type hookLedger struct {
	t  *testing.T
	wh *standardwebhooks.Webhook

	mu       sync.Mutex
	prev     map[string]string          // event -> the event before it in its conversation ("" for the first)
	acked    map[string]int             // event -> 2xx answers
	calls    map[string]int             // event -> calls
	ids      map[string]map[string]bool // event -> webhook-id values seen
	delivery map[string]map[string]bool // event -> Switchboard-Delivery-Id values seen
	byHookID map[string]map[string]bool // webhook-id -> events it named
	early    []string                   // calls that came before the previous event's 2xx
	// hold, when set, keeps calls unanswered until release is closed,
	// then answers them 503; held lists the events of held calls.
	// holdAfter > 0 sets hold once that many events are acknowledged.
	hold      bool
	holdAfter int
	release   chan struct{}
	held      []string
	// refuseFirst answers 503 to the first try (Switchboard-Attempt 1) of
	// these events, so every redelivery is refused once again too.
	refuseFirst map[string]bool
	delay       time.Duration // per call, while set
}

func newHookLedger(t *testing.T, key []byte) *hookLedger {
	wh, err := standardwebhooks.NewWebhook(webhook.FormatSecret(key))
	if err != nil {
		t.Fatal(err)
	}
	return &hookLedger{t: t, wh: wh, prev: map[string]string{}, acked: map[string]int{}, calls: map[string]int{},
		ids: map[string]map[string]bool{}, delivery: map[string]map[string]bool{}, byHookID: map[string]map[string]bool{},
		release: make(chan struct{}), refuseFirst: map[string]bool{}}
}

// expect registers a conversation's next event, before it is produced.
func (l *hookLedger) expect(event, prev string, refuseFirst bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.prev[event] = prev
	if refuseFirst {
		l.refuseFirst[event] = true
	}
}

func addTo(m map[string]map[string]bool, k, v string) {
	if m[k] == nil {
		m[k] = map[string]bool{}
	}
	m[k][v] = true
}

func (l *hookLedger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	if err := l.wh.Verify(body, r.Header); err != nil {
		l.t.Errorf("bad signature on %s: %v", body, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var res struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(body, &res); err != nil || res.RequestID == "" {
		l.t.Errorf("body %s: %v, want a result", body, err)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ev := res.RequestID
	l.mu.Lock()
	prev, known := l.prev[ev]
	if !known {
		l.t.Errorf("delivery of %s, which was never produced", ev)
	}
	if prev != "" && l.acked[prev] == 0 {
		l.early = append(l.early, fmt.Sprintf("%s before %s was acknowledged", ev, prev))
	}
	l.calls[ev]++
	addTo(l.ids, ev, r.Header.Get(webhook.HeaderID))
	addTo(l.delivery, ev, r.Header.Get(webhook.HeaderDeliveryID))
	addTo(l.byHookID, r.Header.Get(webhook.HeaderID), ev)
	if l.holdAfter > 0 && len(l.acked) >= l.holdAfter {
		l.hold = true
	}
	hold, delay := l.hold, l.delay
	if hold {
		l.held = append(l.held, ev)
	}
	refuse := l.refuseFirst[ev] && r.Header.Get(webhook.HeaderAttempt) == "1"
	l.mu.Unlock()
	if hold {
		select {
		case <-l.release:
		case <-r.Context().Done():
		}
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	time.Sleep(delay)
	if refuse {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	l.mu.Lock()
	l.acked[ev]++
	l.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// ackedCount returns how many distinct events have been answered 2xx.
func (l *hookLedger) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// TestWebhooksSurviveEgressKill: an egress delivering webhooks is killed
// (SIGKILL) with deliveries in flight, restarted, and later joined by a
// second egress (a rebalance) while results keep coming: every result is
// acknowledged by the receiver at least once; no delivery of a
// conversation's result starts before the previous one was acknowledged;
// every delivery of one result carries the same webhook-id (and no other
// result's), so the receiver's dedupe by webhook-id leaves exactly one per
// result; the deliveries cut off by the kill are made again, and those
// acknowledged well before it (committed) are not.
func TestWebhooksSurviveEgressKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	webhooksSurviveEgressKill(t, apptest.StackOptions{})
}

var heldPartitions = regexp.MustCompile(`generation \d+, (\d+) partitions`)

// webhooksSurviveEgressKill is TestWebhooksSurviveEgressKill on a stack
// shaped by base.
func webhooksSurviveEgressKill(t *testing.T, base apptest.StackOptions) {
	const secret = "e2e-webhook-crash-secret-0123456789"
	const tenantName = "hooks-e2e" // not in the tenants file: signs with a key derived from secret
	t.Setenv("SWITCHBOARD_WEBHOOK_SECRET", secret)
	s := apptest.StartStack(t, bin, base)
	ledger := newHookLedger(t, webhook.TenantKey([]byte(secret), tenantName))
	srv := httptest.NewServer(ledger)
	defer srv.Close()
	defer func() {
		select {
		case <-ledger.release:
		default:
			close(ledger.release)
		}
	}()
	hook := srv.URL + "/hook"
	group := s.TopicPrefix + "webhooks-crash"

	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	type egressProc struct {
		proc  *apptest.Proc
		admin string
	}
	start := func(name, instance string) egressProc {
		t.Helper()
		port, adminPort := apptest.FreePort(t), apptest.FreePort(t)
		args := append([]string{"--addr", fmt.Sprintf("127.0.0.1:%d", port), "--admin-addr", fmt.Sprintf("127.0.0.1:%d", adminPort),
			"--brokers", s.Brokers, "--tenants", s.TenantsFile, "--webhooks", "--webhook-allow", hook,
			"--webhook-group", group, "--webhook-instance-id", instance, "--webhook-backoff", "50ms",
			"--webhook-max-backoff", "200ms"}, s.TopicArgs()...)
		p := apptest.Start(t, name, bin["egress"], args...)
		return egressProc{p, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort)}
	}
	// partitions returns how many results partitions e delivers.
	partitions := func(e egressProc) int {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.admin, nil)
		if err != nil {
			return 0
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := heldPartitions.FindSubmatch(b)
		if m == nil {
			return 0
		}
		n, _ := strconv.Atoi(string(m[1]))
		return n
	}

	producer, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	const convs = 8
	next := make([]int, convs)
	last := make([]string, convs)
	total := 0
	// produce writes the next result of each conversation, n rounds.
	produce := func(n int) {
		t.Helper()
		for range n {
			var recs []*kgo.Record
			for c := range convs {
				id := fmt.Sprintf("hook-%02d-%03d", c, next[c])
				ledger.expect(id, last[c], next[c]%5 == 2)
				res := &pb.Result{RequestId: id, ConversationId: fmt.Sprintf("hooks-%02d", c), Tenant: tenantName, RunId: "e2e",
					Attempt: 1, WebhookUrl: hook, Body: &pb.Result_Final{Final: &pb.Final{Content: "answer " + id}}}
				rec, err := envelope.EncodeResult(s.Topic("results"), res)
				if err != nil {
					t.Fatal(err)
				}
				recs = append(recs, rec)
				last[c] = id
				next[c]++
				total++
			}
			if err := producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	}

	// Phase 1: egress A delivers; after 40 acknowledgements the receiver
	// holds every further call unanswered, and A is killed with those in
	// flight (and, likely, acknowledged ones not yet committed).
	a := start("egress-hooks-a", "hooks-a")
	if err := apptest.WaitHTTP(ctx, a.admin, time.Minute); err != nil {
		t.Fatal(err)
	}
	ledger.mu.Lock()
	ledger.delay, ledger.holdAfter = 5*time.Millisecond, 40
	ledger.mu.Unlock()
	produce(15)
	if err := apptest.Wait(2*time.Minute, func() error {
		ledger.mu.Lock()
		defer ledger.mu.Unlock()
		if len(ledger.held) < 4 {
			return fmt.Errorf("%d deliveries held", len(ledger.held))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// What is acknowledged now is committed within a commit interval (1 s):
	// the kill must not make it be delivered again.
	ledger.mu.Lock()
	ackedBefore := map[string]bool{}
	for ev := range ledger.acked {
		ackedBefore[ev] = true
	}
	ledger.mu.Unlock()
	time.Sleep(3 * time.Second)
	a.proc.Kill()
	ledger.mu.Lock()
	ledger.hold, ledger.holdAfter = false, 0
	held := append([]string(nil), ledger.held...)
	ackedAtKill := len(ledger.acked)
	ledger.mu.Unlock()
	close(ledger.release)
	t.Logf("egress A killed with %d deliveries in flight, %d of %d results acknowledged", len(held), ackedAtKill, total)

	// Phase 2: A restarts (its static membership gets the partitions back)
	// and delivers the rest; then B joins while results keep coming, and
	// the group moves partitions from A to B under way.
	a = start("egress-hooks-a2", "hooks-a")
	produce(5)
	if err := apptest.Wait(2*time.Minute, func() error {
		if n := partitions(a); n == 0 {
			return errors.New("the restarted egress holds no partitions")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b := start("egress-hooks-b", "hooks-b")
	for round := 0; partitions(b) == 0; round++ {
		if round >= 600 || ctx.Err() != nil {
			t.Fatalf("the second egress holds no partitions after %d rounds", round)
		}
		produce(1)
		time.Sleep(50 * time.Millisecond)
	}
	produce(10) // delivered by both
	ledger.mu.Lock()
	ledger.delay = 0
	ledger.mu.Unlock()

	if err := apptest.Wait(2*time.Minute, func() error {
		if n := ledger.ackedCount(); n < total {
			return fmt.Errorf("%d of %d results acknowledged", n, total)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(time.Second) // a late duplicate or misordered delivery would arrive now

	ledger.mu.Lock()
	defer ledger.mu.Unlock()
	for _, e := range ledger.early {
		t.Errorf("out of conversation order: %s", e)
	}
	redelivered := 0
	for ev := range ledger.prev {
		if ledger.acked[ev] == 0 {
			t.Errorf("%s never acknowledged (%d calls)", ev, ledger.calls[ev])
		}
		if len(ledger.ids[ev]) != 1 || len(ledger.delivery[ev]) != 1 {
			t.Errorf("%s came with webhook-ids %v and delivery IDs %v, want one each on every delivery", ev, ledger.ids[ev], ledger.delivery[ev])
		}
		if ledger.acked[ev] > 1 {
			redelivered++
		}
	}
	// Dedupe by webhook-id, as a receiver does: one per result.
	for id, evs := range ledger.byHookID {
		if len(evs) != 1 {
			t.Errorf("webhook-id %s named results %v, want one", id, evs)
		}
	}
	if len(ledger.byHookID) != len(ledger.prev) {
		t.Errorf("%d distinct webhook-ids for %d results, want one each", len(ledger.byHookID), len(ledger.prev))
	}
	for ev := range ackedBefore {
		if ledger.acked[ev] > 1 {
			t.Errorf("%s, acknowledged 3 s before the kill, was delivered again: its commit did not count", ev)
		}
	}
	for _, ev := range held {
		if ledger.calls[ev] < 2 || ledger.acked[ev] == 0 {
			t.Errorf("%s, in flight at the kill: %d calls, %d acknowledged; want it delivered again", ev, ledger.calls[ev], ledger.acked[ev])
		}
	}
	t.Logf("%d results, %d calls; %d results acknowledged more than once (receivers drop them by webhook-id)",
		len(ledger.prev), sumCalls(ledger.calls), redelivered)
}

func sumCalls(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}
