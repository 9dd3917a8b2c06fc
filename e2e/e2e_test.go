// Package e2e tests Switchboard as users run it: the real binaries as
// processes against a devbroker on free loopback ports, spoken to over
// HTTP and Kafka only.
package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/proto"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

var bin map[string]string

// afterAll run after every test, before TestMain exits (e.g. stopping a
// Kafka cluster the real-Kafka suite started).
var afterAll []func()

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "switchboard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin, err = apptest.Build(dir, "devbroker", "modelsim", "topics", "ingress", "router-worker", "egress", "redrive")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	for _, f := range afterAll {
		f()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

const (
	conversations   = 20
	perConversation = 10
)

type sent struct {
	requestID string
	stream    bool
}

// received is one conversation's stream as a client saw it.
type received struct {
	mu        sync.Mutex
	events    []apptest.Event
	terminals int
}

func (r *received) add(ev apptest.Event) (enough bool) {
	if ev.Name == "end" { // the stream's last event: why it ends, not an answer
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = append(r.events, ev)
	if ev.Name == "result" || ev.Name == "error" {
		r.terminals++
	}
	return r.terminals >= perConversation
}

// count returns the terminal events so far.
func (r *received) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.terminals
}

func (r *received) snapshot() []apptest.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]apptest.Event(nil), r.events...)
}

// TestMessagesFlowThroughTheStack sends 200 messages over 20
// conversations through ingress and reads every answer back through
// egress, live and replayed: each arrives once, whole and in order.
func TestMessagesFlowThroughTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	messagesFlow(t, apptest.StackOptions{})
}

// messagesFlow is TestMessagesFlowThroughTheStack on a stack started with
// opts (the real-Kafka suite runs it too).
func messagesFlow(t *testing.T, opts apptest.StackOptions) {
	s := apptest.StartStack(t, bin, opts)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()

	// Live subscribers first, one per conversation.
	recv := make([]*received, conversations)
	var readers sync.WaitGroup
	var connected sync.WaitGroup
	for c := range conversations {
		recv[c] = &received{}
		connected.Add(1)
		readers.Add(1)
		go func() {
			defer readers.Done()
			once := sync.OnceFunc(connected.Done)
			defer once()
			url := fmt.Sprintf("%s/v1/conversations/%s/events", s.EgressURL, convID(c))
			if err := apptest.ReadSSE(ctx, url, "", once, func(ev apptest.Event) bool {
				return !recv[c].add(ev)
			}); err != nil {
				t.Errorf("conversation %d: %v", c, err)
			}
		}()
	}
	connected.Wait()

	// Each conversation sends its messages one after another (the order to
	// keep); conversations send concurrently.
	sentBy := make([][]sent, conversations)
	var senders sync.WaitGroup
	for c := range conversations {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for i := range perConversation {
				stream := (c+i)%2 == 0
				ack, err := postMessage(ctx, s.IngressURL, convID(c), fmt.Sprintf(`{"model":"sim","stream":%t,"max_tokens":24,"messages":[{"role":"user","content":"conversation %d message %d"}],"metadata":{"seq":"%d"}}`, stream, c, i, i))
				if err != nil {
					t.Errorf("conversation %d message %d: %v", c, i, err)
					return
				}
				sentBy[c] = append(sentBy[c], sent{requestID: ack.RequestID, stream: stream})
			}
		}()
	}
	senders.Wait()
	if t.Failed() {
		return
	}
	readers.Wait()

	for c := range conversations {
		checkConversation(t, c, recv[c].snapshot(), sentBy[c])
	}
	if t.Failed() {
		return
	}

	// A late subscriber gets the same history replayed from Kafka and its
	// stream ends after the named request's terminal event.
	last := sentBy[0][perConversation-1].requestID
	var replayed received
	url := fmt.Sprintf("%s/v1/conversations/%s/events?request_id=%s", s.EgressURL, convID(0), last)
	if err := apptest.ReadSSE(ctx, url, "", nil, func(ev apptest.Event) bool { replayed.add(ev); return true }); err != nil {
		t.Fatalf("replay: %v", err)
	}
	checkConversation(t, 0, replayed.snapshot(), sentBy[0])

	// Resuming from the cursor of conversation 1's fifth answer yields
	// exactly the answers after it.
	var fifth string
	n := 0
	for _, ev := range recv[1].snapshot() {
		if ev.Name == "result" {
			if n++; n == 5 {
				fifth = ev.ID
			}
		}
	}
	var resumed received
	url = fmt.Sprintf("%s/v1/conversations/%s/events?request_id=%s", s.EgressURL, convID(1), sentBy[1][perConversation-1].requestID)
	if err := apptest.ReadSSE(ctx, url, fifth, nil, func(ev apptest.Event) bool { resumed.add(ev); return true }); err != nil {
		t.Fatalf("resume: %v", err)
	}
	checkConversation(t, 1, resumed.snapshot(), sentBy[1][5:])

	// Every service stops cleanly on SIGTERM.
	for _, p := range append(append([]*apptest.Proc{s.Ingress}, s.Routers...), s.Egress, s.Modelsim, s.Devbroker) {
		if p == nil { // no devbroker on an external cluster
			continue
		}
		if err := p.Stop(30 * time.Second); err != nil {
			t.Errorf("%s: stop: %v", p.Name, err)
		}
	}
}

// checkConversation checks that events hold exactly want's answers, once
// each and in order, and that each streamed answer's chunks come in order
// before its result and add up to its content.
func checkConversation(t *testing.T, c int, events []apptest.Event, want []sent) {
	t.Helper()
	next := 0
	var chunks strings.Builder
	wantIndex := int32(0)
	for _, ev := range events {
		var res struct {
			RequestID string            `json:"request_id"`
			Metadata  map[string]string `json:"metadata"`
			Chunk     *struct {
				Index int32  `json:"index"`
				Delta string `json:"delta"`
			} `json:"chunk"`
			Final *struct {
				Content string `json:"content"`
			} `json:"final"`
			Error *struct {
				Code, Message string
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(ev.Data), &res); err != nil {
			t.Fatalf("conversation %d: event %q: %v", c, ev.Data, err)
		}
		if next >= len(want) {
			t.Errorf("conversation %d: unexpected event after the last answer: %s %s", c, ev.Name, ev.Data)
			return
		}
		if res.RequestID != want[next].requestID {
			t.Errorf("conversation %d: event %s for request %s, want request %s (answer %d): out of order or duplicated", c, ev.Name, res.RequestID, want[next].requestID, next)
			return
		}
		switch ev.Name {
		case "chunk":
			if !want[next].stream {
				t.Errorf("conversation %d: chunk for non-streaming request %s", c, res.RequestID)
			}
			if res.Chunk.Index != wantIndex {
				t.Errorf("conversation %d: chunk index %d, want %d", c, res.Chunk.Index, wantIndex)
			}
			wantIndex++
			chunks.WriteString(res.Chunk.Delta)
		case "result":
			if want[next].stream && chunks.String() != res.Final.Content {
				t.Errorf("conversation %d: chunks add up to %q, final content is %q", c, chunks.String(), res.Final.Content)
			}
			if res.Final.Content == "" {
				t.Errorf("conversation %d: empty answer", c)
			}
			if res.Metadata["seq"] == "" {
				t.Errorf("conversation %d: metadata not copied into the result", c)
			}
			next++
			chunks.Reset()
			wantIndex = 0
		default:
			t.Errorf("conversation %d: %s event: %s", c, ev.Name, ev.Data)
			return
		}
	}
	if next != len(want) {
		t.Errorf("conversation %d: %d answers arrived, want %d", c, next, len(want))
	}
}

// TestBadInput checks that ingress rejects bad requests with a JSON error
// and that a record no one can decode, produced straight to Kafka, ends up
// in the dead-letter topic with its reason while good work goes on.
func TestBadInput(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	badInput(t, apptest.StackOptions{})
}

// badInput is TestBadInput on a stack started with opts.
func badInput(t *testing.T, opts apptest.StackOptions) {
	s := apptest.StartStack(t, bin, opts)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	tests := []struct {
		name, body string
		status     int
		code       string
	}{
		{"no model", `{"messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request"},
		{"no messages", `{"model":"sim"}`, 400, "invalid_request"},
		{"bad lane", `{"model":"sim","lane":"fast","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_request"},
		{"not json", `hello`, 400, "invalid_json"},
		{"unknown field", `{"model":"sim","prompt":"x","messages":[{"role":"user","content":"hi"}]}`, 400, "invalid_json"},
		{"too big", `{"model":"sim","messages":[{"role":"user","content":"` + strings.Repeat("x", 2<<20) + `"}]}`, 413, "body_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, body := post(ctx, t, s.IngressURL+"/v1/conversations/bad/messages", tt.body)
			var e struct {
				Error struct{ Code, Message string }
			}
			if status != tt.status || json.Unmarshal(body, &e) != nil || e.Error.Code != tt.code || e.Error.Message == "" {
				t.Errorf("status %d body %s, want %d with error code %q", status, body, tt.status, tt.code)
			}
		})
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...),
		kgo.ConsumeTopics(s.Topic("deadletter")), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	poison := &kgo.Record{Topic: s.Topic("requests.interactive"), Key: []byte("poison"), Value: []byte("\xff\x00 not a request")}
	if err := cl.ProduceSync(ctx, poison).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A good message on the same conversation after the poison one is answered.
	ack, err := postMessage(ctx, s.IngressURL, "poison", `{"model":"sim","messages":[{"role":"user","content":"still here?"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	var dl pb.DeadLetter
	for found := false; !found; {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("no dead letter within the time limit")
		}
		fetches.EachRecord(func(r *kgo.Record) {
			if proto.Unmarshal(r.Value, &dl) == nil && dl.GetSourceOffset() == poison.Offset && dl.GetSourcePartition() == poison.Partition {
				found = true
			}
		})
	}
	if dl.GetReason() != "decode_error" || !bytes.Equal(dl.GetValue(), poison.Value) || dl.GetDetail() == "" {
		t.Errorf("dead letter = reason %q value %q detail %q, want decode_error with the original bytes", dl.GetReason(), dl.GetValue(), dl.GetDetail())
	}
	var answered bool
	url := fmt.Sprintf("%s/v1/conversations/poison/events?request_id=%s", s.EgressURL, ack.RequestID)
	if err := apptest.ReadSSE(ctx, url, "", nil, func(ev apptest.Event) bool {
		answered = answered || (ev.Name == "result" && strings.Contains(ev.Data, ack.RequestID))
		return true
	}); err != nil || !answered {
		t.Errorf("the message after the poison record was not answered (err %v)", err)
	}
}

type ackBody struct {
	RequestID      string `json:"request_id"`
	ConversationID string `json:"conversation_id"`
	Lane           string `json:"lane"`
	Partition      int32  `json:"partition"`
	Offset         int64  `json:"offset"`
}

func postMessage(ctx context.Context, base, conv, body string) (*ackBody, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/conversations/"+conv+"/messages", strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apptest.DevKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		return nil, fmt.Errorf("status %s: %s", resp.Status, b)
	}
	var ack ackBody
	if err := json.Unmarshal(b, &ack); err != nil {
		return nil, fmt.Errorf("ack %s: %w", b, err)
	}
	if ack.RequestID == "" || ack.ConversationID != conv || ack.Offset < 0 {
		return nil, fmt.Errorf("ack %s is incomplete", b)
	}
	return &ack, nil
}

func post(ctx context.Context, t *testing.T, url, body string) (int, []byte) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apptest.DevKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func convID(c int) string { return fmt.Sprintf("conv-%02d", c) }
