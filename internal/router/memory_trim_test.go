package router

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// turns returns n turns r0..r(n-1), each a user message and an answer of
// size bytes.
func turns(n, size int) []*pb.Turn {
	out := make([]*pb.Turn, n)
	for i := range out {
		out[i] = &pb.Turn{RequestId: fmt.Sprintf("r%d", i), Messages: []*pb.Message{
			{Role: "user", Content: fmt.Sprintf("q%d", i)},
			{Role: "assistant", Content: strings.Repeat("a", size)},
		}}
	}
	return out
}

// contents joins the contents of msgs with "|".
func contents(msgs []*pb.Message) string {
	var s []string
	for _, m := range msgs {
		c := m.GetContent()
		if len(c) > 8 {
			c = c[:8]
		}
		s = append(s, c)
	}
	return strings.Join(s, "|")
}

func TestMemoryPrompt(t *testing.T) {
	short := turns(3, 4) // each turn: 2 messages, (4+1)+(4+1) = 10 tokens
	for _, tc := range []struct {
		name   string
		budget memoryBudget
		hist   []*pb.Turn
		req    []*pb.Message
		id     string
		want   string
	}{
		{"no history", memoryBudget{64, 8192}, nil,
			[]*pb.Message{{Role: "user", Content: "hi"}}, "new", "hi"},
		{"everything fits", memoryBudget{64, 8192}, short,
			[]*pb.Message{{Role: "user", Content: "hi"}}, "new", "q0|aaaa|q1|aaaa|q2|aaaa|hi"},
		{"system first, not counted as history", memoryBudget{64, 8192}, short[:1],
			[]*pb.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: "hi"}}, "new", "be brief|q0|aaaa|hi"},
		{"message budget drops the oldest whole turns", memoryBudget{5, 0}, short,
			[]*pb.Message{{Role: "user", Content: "hi"}}, "new", "q1|aaaa|q2|aaaa|hi"},
		{"token budget drops the oldest whole turns", memoryBudget{0, 24}, short,
			[]*pb.Message{{Role: "user", Content: "hi"}}, "new", "q2|aaaa|hi"},
		{"the request alone over the budget is sent whole", memoryBudget{1, 1}, short,
			[]*pb.Message{{Role: "user", Content: "a long question"}, {Role: "user", Content: "and more"}}, "new", "a long q|and more"},
		{"a request processed again sees the turns before its own", memoryBudget{64, 8192}, short,
			[]*pb.Message{{Role: "user", Content: "q1"}}, "r1", "q0|aaaa|q1"},
		{"no budget", memoryBudget{-1, -1}, turns(100, 1), []*pb.Message{{Role: "user", Content: "hi"}}, "new",
			contents(flatten(turns(100, 1))) + "|hi"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &pb.History{Turns: tc.hist}
			got := contents(tc.budget.prompt(h, &pb.Request{RequestId: tc.id, Messages: tc.req}))
			if got != tc.want {
				t.Errorf("got %s, want %s", got, tc.want)
			}
		})
	}
}

func flatten(ts []*pb.Turn) []*pb.Message {
	var out []*pb.Message
	for _, t := range ts {
		out = append(out, t.GetMessages()...)
	}
	return out
}

func TestMemoryAppended(t *testing.T) {
	req := func(id string) *pb.Request {
		return &pb.Request{RequestId: id, ConversationId: "c", Tenant: "t", Lane: "interactive",
			Messages: []*pb.Message{{Role: "system", Content: "sys"}, {Role: "user", Content: "q-" + id}}}
	}
	b := memoryBudget{64, 8192}

	t.Run("appends the turn without system messages", func(t *testing.T) {
		h := &pb.History{Turns: turns(2, 4)}
		next := b.appended(h, req("r2"), "ans", 0)
		if got, want := contents(flatten(next.GetTurns())), "q0|aaaa|q1|aaaa|q-r2|ans"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		if next.GetConversationId() != "c" || next.GetTenant() != "t" || next.GetLane() != "interactive" {
			t.Errorf("identity: got %s/%s/%s, want interactive/t/c", next.GetLane(), next.GetTenant(), next.GetConversationId())
		}
		if len(h.GetTurns()) != 2 {
			t.Errorf("the old history changed: %d turns", len(h.GetTurns()))
		}
	})
	t.Run("a request processed again replaces its turn and what followed", func(t *testing.T) {
		h := &pb.History{Turns: turns(3, 4)}
		next := b.appended(h, req("r1"), "again", 0)
		if got, want := contents(flatten(next.GetTurns())), "q0|aaaa|q-r1|again"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
	})
	t.Run("trimmed to the budget, counting what was dropped", func(t *testing.T) {
		h := &pb.History{Turns: turns(10, 4), Dropped: 5}
		next := memoryBudget{6, 0}.appended(h, req("r10"), "ans", 0)
		if got, want := contents(flatten(next.GetTurns())), "q8|aaaa|q9|aaaa|q-r10|ans"; got != want {
			t.Errorf("got %s, want %s", got, want)
		}
		if got, want := next.GetDropped(), int64(5+8); got != want {
			t.Errorf("dropped: got %d, want %d", got, want)
		}
	})
	t.Run("trimmed to the record size", func(t *testing.T) {
		h := &pb.History{Turns: turns(10, 1000)}
		next := memoryBudget{-1, -1}.appended(h, req("r10"), "ans", 3500)
		if size := proto.Size(next); size > 3500 {
			t.Errorf("encoded size %d, want at most 3500", size)
		}
		if n := len(next.GetTurns()); n != 4 || next.GetTurns()[n-1].GetRequestId() != "r10" {
			t.Errorf("kept %d turns ending with %s, want the newest 3 and r10", n, next.GetTurns()[n-1].GetRequestId())
		}
	})
	t.Run("a turn alone over the record size leaves none", func(t *testing.T) {
		next := b.appended(nil, req("r0"), strings.Repeat("x", 5000), 1000)
		if len(next.GetTurns()) != 0 || next.GetDropped() != 1 {
			t.Errorf("got %d turns, %d dropped; want 0 and 1", len(next.GetTurns()), next.GetDropped())
		}
	})
}
