package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// memoryTurn posts one user message with memory to conversation conv,
// waits for its answer through egress and returns the answer's content.
func memoryTurn(ctx context.Context, t *testing.T, s *apptest.Stack, conv, text string) string {
	t.Helper()
	body := fmt.Sprintf(`{"model":"sim","memory":true,"max_tokens":12,"messages":[{"role":"system","content":"be brief"},{"role":"user","content":%q}]}`, text)
	status, _, b := send(ctx, t, "POST", s.IngressURL+"/v1/conversations/"+conv+"/messages", body, nil)
	if status != http.StatusAccepted {
		t.Fatalf("%s: POST %d %s", conv, status, b)
	}
	var a struct {
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(b, &a); err != nil {
		t.Fatal(err)
	}
	data := waitAnswer(ctx, t, s.EgressURL, conv, a.RequestID)
	var res struct {
		Final struct {
			Content string `json:"content"`
		} `json:"final"`
	}
	if err := json.Unmarshal([]byte(strings.TrimPrefix(data, "result ")), &res); err != nil || res.Final.Content == "" {
		t.Fatalf("%s: answer %q: %v", conv, data, err)
	}
	return res.Final.Content
}

// modelSaw returns the messages ("role: content") modelsim received in the
// call whose last message contains last.
func modelSaw(ctx context.Context, t *testing.T, s *apptest.Stack, last string) []string {
	t.Helper()
	status, _, b := send(ctx, t, "GET", s.ModelsimURL+"/debug/requests?last="+url.QueryEscape(last), "", nil)
	var got struct {
		Requests []struct {
			Messages []struct{ Role, Content string }
		}
	}
	if err := json.Unmarshal(b, &got); status != http.StatusOK || err != nil || len(got.Requests) == 0 {
		t.Fatalf("modelsim's requests ending %q: %d %s (%v)", last, status, b, err)
	}
	var out []string
	for _, m := range got.Requests[len(got.Requests)-1].Messages {
		out = append(out, m.Role+": "+m.Content)
	}
	return out
}

// routerAnswered returns how many requests a router-worker answered (its
// switchboard_router_requests_total, outcome ok).
func routerAnswered(ctx context.Context, t *testing.T, adminURL string) int {
	t.Helper()
	_, _, b := send(ctx, t, "GET", adminURL+"/metrics", "", nil)
	n := 0
	for line := range strings.Lines(string(b)) {
		if strings.HasPrefix(line, "switchboard_router_requests_total{") && strings.Contains(line, `outcome="ok"`) {
			f := strings.Fields(line)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			n += int(v)
		}
	}
	return n
}

// TestConversationMemory: conversations with memory through the real
// binaries. Each conversation's client sends only its new message; the
// model (modelsim, whose /debug/requests shows what it was sent) receives
// the conversation's history before it: after the only router-worker is
// killed with SIGKILL and another takes over (the history rebuilt from the
// history topic), after a second worker joins and takes some of the
// partitions (rebuilt there), and not after the conversation is deleted.
func TestConversationMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	conversationMemory(t, apptest.StackOptions{})
}

// TestConversationMemoryExactlyOnce is TestConversationMemory with
// router-workers in exactly-once mode: the history is appended in the
// transaction of the final result and rebuilt read_committed.
func TestConversationMemoryExactlyOnce(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	conversationMemory(t, apptest.StackOptions{RouterArgs: []string{"--exactly-once"}})
}

// conversationMemory is TestConversationMemory on a stack shaped by base.
func conversationMemory(t *testing.T, base apptest.StackOptions) {
	base.RouterArgs = append([]string{"--session-timeout", "3s"}, base.RouterArgs...)
	s := apptest.StartStack(t, bin, base)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	const convs = 8 // over 12 partitions: a second worker takes some of them
	conv := func(c int) string { return fmt.Sprintf("memory-%02d", c) }
	turn := func(c, n int) string { return fmt.Sprintf("%s turn %d", conv(c), n) }
	answers := make([][]string, convs)
	// want is what the model must see for turn n of c: the system message,
	// the earlier turns since from, with their answers, and the turn.
	want := func(c, from, n int) []string {
		out := []string{"system: be brief"}
		for i := from; i < n; i++ {
			out = append(out, "user: "+turn(c, i), "assistant: "+answers[c][i])
		}
		return append(out, "user: "+turn(c, n))
	}
	check := func(c, from, n int, when string) {
		t.Helper()
		got, w := modelSaw(ctx, t, s, turn(c, n)), want(c, from, n)
		if strings.Join(got, "\n") != strings.Join(w, "\n") {
			t.Errorf("%s, the model was sent for %s:\n%s\nwant:\n%s", when, turn(c, n), strings.Join(got, "\n"), strings.Join(w, "\n"))
		}
	}
	round := func(n, from int, when string) {
		t.Helper()
		for c := range convs {
			answers[c] = append(answers[c], memoryTurn(ctx, t, s, conv(c), turn(c, n)))
			check(c, from, n, when)
		}
	}

	round(0, 0, "first turn")
	round(1, 0, "second turn")

	// Until the answered requests are committed, a new owner would
	// process them again and so rebuild the history by replaying them
	// (modelsim answers the same messages the same way): wait, so that
	// only the history topic can tell it.
	waitCommitted(ctx, t, s)
	s.Routers[0].Kill() // SIGKILL: nothing flushed, nothing left
	s.StartRouter()
	round(2, 0, "after the worker was killed and another took over")

	waitCommitted(ctx, t, s)
	before := routerAnswered(ctx, t, s.RouterURLs[1])
	s.StartRouter()
	// The newcomer is ready once it holds its partitions (rebuilt first).
	round(3, 0, "after a second worker joined")
	if moved := routerAnswered(ctx, t, s.RouterURLs[2]); moved == 0 {
		t.Errorf("the joining worker answered none of the conversations (the first answered %d more): the rebalance moved nothing",
			routerAnswered(ctx, t, s.RouterURLs[1])-before)
	}

	status, _, b := send(ctx, t, "DELETE", s.IngressURL+"/v1/conversations/"+conv(0)+"/history", "", nil)
	if status != http.StatusAccepted {
		t.Fatalf("DELETE history: %d %s", status, b)
	}
	answers[0] = append(answers[0], memoryTurn(ctx, t, s, conv(0), turn(0, 4)))
	check(0, 4, 4, "after the conversation was deleted")
	answers[1] = append(answers[1], memoryTurn(ctx, t, s, conv(1), turn(1, 4)))
	check(1, 0, 4, "after another conversation was deleted")
}

// waitCommitted waits until the router group has committed every request.
func waitCommitted(ctx context.Context, t *testing.T, s *apptest.Stack) {
	t.Helper()
	if err := apptest.Wait(30*time.Second, func() error {
		if n := uncommitted(ctx, t, s); n > 0 {
			return fmt.Errorf("%d requests not committed", n)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
