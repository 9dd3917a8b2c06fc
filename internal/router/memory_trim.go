package router

import (
	"google.golang.org/protobuf/proto"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Trimming a conversation's memory. A history is a list of turns, oldest
// first; a turn is a request's messages (without its system messages,
// which are never remembered: a request sends its own) and the answer.
// Whole turns are dropped, oldest first, so the model never sees half an
// exchange. The budget counts messages and approximate tokens (four bytes
// a token plus four a message, the estimate the tenant buckets use), and
// holds the request's own messages too: a prompt is the request's system
// messages, the newest remembered turns that fit, then the request's other
// messages. The request's own messages are always sent, even alone over
// the budget. What is stored after an answer fits the same budget, so a
// stored history is never much larger than what a prompt can use.

// memoryBudget bounds the messages a prompt takes from memory; zero
// fields do not bound.
type memoryBudget struct {
	messages, tokens int
}

// approxTokens estimates the tokens of msgs as estimateTokens does.
func approxTokens(msgs []*pb.Message) int {
	n := 0
	for _, m := range msgs {
		n += 4 + (len(m.GetContent())+3)/4
	}
	return n
}

// fit returns the newest turns that fit within b once reserve (messages
// that are sent anyway) is counted: a suffix of turns.
func (b memoryBudget) fit(turns []*pb.Turn, reserve []*pb.Message) []*pb.Turn {
	msgs, toks := len(reserve), approxTokens(reserve)
	i := len(turns)
	for i > 0 {
		t := turns[i-1].GetMessages()
		m, k := len(t), approxTokens(t)
		if (b.messages > 0 && msgs+m > b.messages) || (b.tokens > 0 && toks+k > b.tokens) {
			break
		}
		msgs, toks = msgs+m, toks+k
		i--
	}
	return turns[i:]
}

// isSystem reports whether m instructs rather than converses (system and
// OpenAI's developer role): such messages are sent but not remembered.
func isSystem(m *pb.Message) bool {
	return m.GetRole() == "system" || m.GetRole() == "developer"
}

// split returns a request's system messages and its others.
func split(msgs []*pb.Message) (system, others []*pb.Message) {
	for _, m := range msgs {
		if isSystem(m) {
			system = append(system, m)
		} else {
			others = append(others, m)
		}
	}
	return system, others
}

// before returns the turns of h older than the turn of requestID: all of
// them when h has no such turn. A request processed again (after a crash
// or a rebalance, its answer appended but its offset not committed) so
// sees the history its first processing saw, and replaces its turn.
func before(h *pb.History, requestID string) []*pb.Turn {
	turns := h.GetTurns()
	for i, t := range turns {
		if t.GetRequestId() == requestID {
			return turns[:i]
		}
	}
	return turns
}

// prompt returns the messages sent to the model for req: its system
// messages, the remembered turns before it that fit b, its other messages.
func (b memoryBudget) prompt(h *pb.History, req *pb.Request) []*pb.Message {
	system, others := split(req.GetMessages())
	out := append([]*pb.Message(nil), system...)
	for _, t := range b.fit(before(h, req.GetRequestId()), req.GetMessages()) {
		out = append(out, t.GetMessages()...)
	}
	return append(out, others...)
}

// appended returns the history that follows h once req is answered with
// answer: the turns before req's, trimmed to b, then req's turn, and
// further trimmed (oldest first) until its encoding is at most maxBytes
// (0: unbounded); a turn alone over maxBytes leaves no turn at all.
// h is not changed.
func (b memoryBudget) appended(h *pb.History, req *pb.Request, answer string, maxBytes int) *pb.History {
	_, others := split(req.GetMessages())
	turn := &pb.Turn{RequestId: req.GetRequestId(),
		Messages: append(others, &pb.Message{Role: "assistant", Content: answer})}
	earlier := before(h, req.GetRequestId())
	kept := b.fit(earlier, turn.GetMessages())
	next := &pb.History{
		ConversationId: req.GetConversationId(),
		Tenant:         req.GetTenant(),
		Lane:           req.GetLane(),
		Turns:          append(append(make([]*pb.Turn, 0, len(kept)+1), kept...), turn),
		Dropped:        h.GetDropped() + int64(len(earlier)-len(kept)),
	}
	for maxBytes > 0 && len(next.Turns) > 0 && proto.Size(next) > maxBytes {
		next.Turns = next.Turns[1:]
		next.Dropped++
	}
	return next
}
