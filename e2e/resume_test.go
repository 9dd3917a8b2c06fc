package e2e

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/stack"
)

// TestResumeAfterEgressKill: egress is killed (SIGKILL) and restarted, and
// hundreds of SSE clients resume at once from cursors older than its
// index of recent results: each gets exactly the events after its cursor,
// in order, then the live ones, while the restarted egress opens a bounded
// number of Kafka connections for all of them (its replay pool, not a
// client per stream).
func TestResumeAfterEgressKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	resumeAfterEgressKill(t, apptest.StackOptions{})
}

// resumeAfterEgressKill is TestResumeAfterEgressKill on a stack shaped by
// base (its cluster has 3 brokers).
func resumeAfterEgressKill(t *testing.T, base apptest.StackOptions) {
	const (
		convs    = 20
		perConv  = 15 // resuming clients per conversation
		messages = 3
		readers  = 2
	)
	// A short window: the cursors are older than the restarted egress's
	// index, so every resume reads Kafka.
	base.EgressArgs = append(base.EgressArgs, "--replay-window", "2s", "--replay-readers", strconv.Itoa(readers))
	s := apptest.StartStack(t, bin, base)
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	conv := func(c int) string { return fmt.Sprintf("resume-%02d", c) }
	events := func(c int) string { return fmt.Sprintf("%s/v1/conversations/%s/events", s.EgressURL, conv(c)) }

	// Each conversation's history, as a client that read it live saw it.
	history := make([][]apptest.Event, convs)
	var wg sync.WaitGroup
	for c := range convs {
		wg.Go(func() {
			connected := make(chan struct{})
			read := make(chan error, 1)
			go func() {
				read <- apptest.ReadSSE(ctx, events(c), "", func() { close(connected) }, func(ev apptest.Event) bool {
					history[c] = append(history[c], ev)
					return results(history[c]) < messages
				})
			}()
			select {
			case <-connected:
			case err := <-read:
				t.Errorf("conversation %d: %v", c, err)
				return
			}
			for i := range messages {
				if err := postOnce(ctx, s.IngressURL, conv(c), fmt.Sprintf("%s-%d", conv(c), i), fmt.Sprintf(`{"model":"sim","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"resume %d message %d"}]}`, c, i)); err != nil {
					t.Errorf("conversation %d message %d: %v", c, i, err)
					return
				}
			}
			if err := <-read; err != nil || results(history[c]) < messages {
				t.Errorf("conversation %d: %d results read (%v)", c, results(history[c]), err)
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	time.Sleep(3 * time.Second) // the cursors age past the replay window

	if err := s.Launcher.KillRestart(ctx, stack.ProcEgress, 100*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	connects := metricSum(ctx, t, s.EgressAdminURL, "switchboard_egress_kafka_connects_total")

	// Every client resumes at once from a random event of its history.
	rng := rand.New(rand.NewPCG(7, 9))
	type client struct {
		c, from int // conversation; index in history of the cursor's event
		got     []apptest.Event
		err     error
	}
	var clients []*client
	for c := range convs {
		for range perConv {
			clients = append(clients, &client{c: c, from: rng.IntN(len(history[c]))})
		}
	}
	var opened sync.WaitGroup
	for _, cl := range clients {
		opened.Add(1)
		wg.Go(func() {
			once := sync.OnceFunc(opened.Done)
			defer once()
			seen := len(history[cl.c]) - cl.from - 1
			cl.err = apptest.ReadSSE(ctx, events(cl.c), history[cl.c][cl.from].ID, once, func(ev apptest.Event) bool {
				cl.got = append(cl.got, ev)
				// Until the live answer's result, after the history.
				return ev.Name != "end" && (len(cl.got) <= seen || ev.Name != "result")
			})
		})
	}
	opened.Wait()
	for c := range convs { // a live answer per conversation
		if err := postOnce(ctx, s.IngressURL, conv(c), conv(c)+"-live", fmt.Sprintf(`{"model":"sim","stream":true,"max_tokens":8,"messages":[{"role":"user","content":"resume %d live"}]}`, c)); err != nil {
			t.Fatalf("conversation %d live message: %v", c, err)
		}
	}
	wg.Wait()

	live := make([][]apptest.Event, convs) // the live part, as the first client of each conversation saw it
	bad := 0
	for _, cl := range clients {
		want := history[cl.c][cl.from+1:]
		ok := cl.err == nil && len(cl.got) > len(want) && same(cl.got[:len(want)], want)
		if ok {
			rest := cl.got[len(want):]
			if live[cl.c] == nil {
				live[cl.c] = rest
			}
			ok = same(rest, live[cl.c]) && rest[len(rest)-1].Name == "result"
		}
		if !ok {
			if bad++; bad <= 3 {
				t.Errorf("conversation %d resumed after event %d of %d (%v): got %d events %v\nwant the history's %d after it, then the live answer %v",
					cl.c, cl.from, len(history[cl.c]), cl.err, len(cl.got), names(cl.got), len(want), names(live[cl.c]))
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d resumed clients did not get exactly their events", bad, len(clients))
	}
	if n := metricSum(ctx, t, s.EgressAdminURL, `switchboard_egress_replays_total{source="kafka"}`); n < float64(len(clients))*0.9 {
		t.Errorf("%v replays from Kafka for %d resumes: the cursors were not older than the index", n, len(clients))
	}
	opens := metricSum(ctx, t, s.EgressAdminURL, "switchboard_egress_kafka_connects_total") - connects
	t.Logf("%d resumed clients: egress opened %v Kafka connections, scanned %v records in %v passes with %v clients",
		len(clients), opens, metricSum(ctx, t, s.EgressAdminURL, "switchboard_egress_replay_records_scanned_total"),
		metricSum(ctx, t, s.EgressAdminURL, "switchboard_egress_replay_passes_total"),
		metricSum(ctx, t, s.EgressAdminURL, "switchboard_egress_replay_clients_total"))
	// A reader's client connects to the seed and, as it moves between
	// partitions, to each of the cluster's 3 brokers twice (requests,
	// fetches); the live reader may add a few.
	if bound := float64(readers*(1+2*3) + 10); opens > bound {
		t.Errorf("egress opened %v Kafka connections for %d resumes, want at most %v", opens, len(clients), bound)
	}
}

// postOnce posts a message with an Idempotency-Key, again (a few times)
// when ingress answers 503: a cold cluster may be slow to acknowledge the
// first produce, and the key keeps a retry from being a second request.
func postOnce(ctx context.Context, base, conv, key, body string) error {
	var last error
	for range 5 {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/conversations/"+conv+"/messages", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apptest.DevKey)
		req.Header.Set("Idempotency-Key", key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			return nil
		case http.StatusServiceUnavailable:
			last = fmt.Errorf("status %s: %s", resp.Status, b)
			time.Sleep(time.Second)
		default:
			return fmt.Errorf("status %s: %s", resp.Status, b)
		}
	}
	return last
}

// results counts the result events of evs.
func results(evs []apptest.Event) int {
	n := 0
	for _, ev := range evs {
		if ev.Name == "result" {
			n++
		}
	}
	return n
}

func same(a, b []apptest.Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func names(evs []apptest.Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, ev.Name)
	}
	return out
}

// metricSum sums the samples of the admin listener at adminURL whose line
// starts with prefix (a name, or a name and the start of its labels).
func metricSum(ctx context.Context, t *testing.T, adminURL, prefix string) float64 {
	t.Helper()
	_, _, b := send(ctx, t, "GET", adminURL+"/metrics", "", nil)
	sum := 0.0
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(l, prefix) {
			continue
		}
		rest := l[len(prefix):]
		if !strings.HasPrefix(rest, " ") && !strings.HasPrefix(rest, "{") && !strings.HasPrefix(prefix[len(prefix)-1:], "}") {
			continue // another metric whose name starts with prefix
		}
		f := strings.Fields(l)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", l, err)
		}
		sum += v
	}
	return sum
}
