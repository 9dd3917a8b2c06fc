package ingress

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Conversations with memory: a request with Request.memory set is sent to
// the model after its conversation's remembered history, and its answer is
// remembered (router-worker does both; see internal/router/memory.go). A
// request asks for it with "memory": true|false in its body (native HTTP,
// batch items, WebSocket frames; gRPC's SubmitRequest.memory) or the
// X-Switchboard-Memory header (POST /v1/conversations/{id}/messages and the
// OpenAI-compatible API); absent both, the tenant's memory setting decides,
// except on the OpenAI-compatible API, whose clients send whole histories
// by the protocol's convention and so get memory only when they ask.
//
// DELETE /v1/conversations/{id}/history forgets a conversation: it produces
// a forget_memory record to each requests topic (lane) the tenant may use,
// keyed by the conversation like its requests, so the forgetting happens in
// the conversation's order: requests accepted before the delete may still
// be remembered, then everything is forgotten, and requests accepted after
// it start from nothing. router-worker writes the tombstones. The record
// carries the authenticated tenant, and a history's key holds its tenant,
// so a tenant can only forget its own conversations.

// HeaderMemory turns a request's memory on ("on", "true", "1") or off
// ("off", "false", "0").
const HeaderMemory = "X-Switchboard-Memory"

// memoryHeader applies r's X-Switchboard-Memory header to b, if it has one.
func memoryHeader(r *http.Request, b *messageBody) *failure {
	v := r.Header.Get(HeaderMemory)
	if v == "" {
		return nil
	}
	var on bool
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "on", "true", "1":
		on = true
	case "off", "false", "0":
	default:
		return badRequest(HeaderMemory, "must be on or off, got %q", v)
	}
	b.Memory = &on
	return nil
}

// memory reports whether s's request uses its conversation's memory.
func (s *submission) memory() bool {
	if s.body.Memory != nil {
		return *s.body.Memory
	}
	return s.tenant.Memory && s.protocol != "openai"
}

// forgetAnswer is the 202 answer of DELETE /v1/conversations/{id}/history.
type forgetAnswer struct {
	ConversationID string `json:"conversation_id"`
	// Lanes are the lanes whose history of the conversation will be
	// forgotten, in order with their requests.
	Lanes []string `json:"lanes"`
}

func (in *Ingress) handleForget(w http.ResponseWriter, r *http.Request) {
	t, f := in.authenticate(r.Header.Get("Authorization"))
	if f != nil {
		in.reject("http", f)
		writeFailure(w, f)
		return
	}
	conv := r.PathValue("conversation_id")
	if !envelope.ValidConversationID(conv) {
		f := badRequest("conversation_id", "conversation_id must be 1 to %d characters of letters, digits and ._:-", envelope.MaxConversationIDLen)
		in.reject("http", f)
		writeFailure(w, f)
		return
	}
	answer := forgetAnswer{ConversationID: conv, Lanes: []string{}}
	var prods []*production
	now := time.Now()
	for _, lane := range []string{envelope.LaneInteractive, envelope.LaneBatch} {
		if !t.AllowsLane(lane) {
			continue
		}
		req := &pb.Request{RequestId: uuid.Must(uuid.NewV7()).String(), ConversationId: conv, Tenant: t.Name,
			Lane: lane, ForgetMemory: true, AcceptedAt: timestamppb.New(now)}
		pr, pf := in.produce(r.Context(), req)
		if pf != nil {
			f = pf
			break
		}
		prods = append(prods, pr)
		answer.Lanes = append(answer.Lanes, lane)
	}
	for _, pr := range prods {
		if _, pf := in.awaitProduce(pr); pf != nil && f == nil {
			f = pf
		}
	}
	status := http.StatusAccepted
	if f != nil {
		status = f.status
	}
	in.metrics.requests.WithLabelValues("http", "forget", strconv.Itoa(status)).Inc()
	if f != nil {
		in.metrics.rejected.WithLabelValues(f.code).Inc()
		f.message += " (forgetting again is harmless)"
		writeFailure(w, f)
		return
	}
	writeJSON(w, http.StatusAccepted, answer)
}
