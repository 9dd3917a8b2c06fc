package ingress

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// HeaderConversationID names the conversation of an OpenAI-compatible
// request; without it every request is a conversation of its own.
const HeaderConversationID = "X-Switchboard-Conversation-Id"

// OpenAIConfig configures the OpenAI-compatible API (POST
// /v1/chat/completions, GET /v1/models): requests go through the same
// checks and the same Kafka pipeline as every other, and the call waits
// for the answer, which ingress reads back from the results topic
// (answers).
type OpenAIConfig struct {
	// Disabled turns the API off (its routes answer 404).
	Disabled bool
	// Timeout bounds how long a call waits for its answer after Kafka
	// acknowledged the request; then it gets 504 (a streamed one an error
	// event). The request stays in Kafka and is still processed. Default
	// 120s.
	Timeout time.Duration
	// MaxWaiting bounds the calls waiting for their answers at once, on
	// this instance; beyond it calls get 503 overloaded. Default 10000.
	MaxWaiting int
}

func (c *OpenAIConfig) setDefaults() {
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
	}
	if c.MaxWaiting == 0 {
		c.MaxWaiting = 10000
	}
}

// oaiError is the error object of OpenAI's API: {"error": oaiError}.
type oaiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

// openAIError turns a failure into OpenAI's error shape and status. The
// code stays Switchboard's (the native API's codes), but for models: an
// unknown model, or one the tenant may not use, is 404 model_not_found as
// on OpenAI. Field names that came from headers name the header.
func openAIError(f *failure) (int, oaiError) {
	status, code, param := f.status, f.code, f.field
	switch code {
	case "unknown_model", "model_not_allowed":
		status, code, param = http.StatusNotFound, "model_not_found", fieldModel
	}
	switch param {
	case "conversation_id":
		param = HeaderConversationID
	case "idempotency_key":
		param = "Idempotency-Key"
	}
	e := oaiError{Message: f.message, Type: oaiErrorType(status)}
	if code != "" {
		e.Code = &code
	}
	if param != "" {
		e.Param = &param
	}
	return status, e
}

func oaiErrorType(status int) string {
	switch {
	case status == http.StatusUnauthorized:
		return "authentication_error"
	case status == http.StatusForbidden:
		return "permission_error"
	case status == http.StatusTooManyRequests:
		return "rate_limit_error"
	case status == http.StatusGatewayTimeout:
		return "timeout"
	case status >= 500:
		return "server_error"
	default:
		return "invalid_request_error"
	}
}

// writeOpenAIFailure answers f in OpenAI's error shape, with Retry-After
// on 429 and 503 as the native API.
func writeOpenAIFailure(w http.ResponseWriter, f *failure) {
	if f.retryAfter > 0 {
		w.Header().Set("Retry-After", f.retryAfterSeconds())
	}
	if f.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
	}
	status, e := openAIError(f)
	writeJSON(w, status, map[string]oaiError{"error": e})
}

// resultFailure is the failure a terminal error result answers.
func resultFailure(e *pb.Error) *failure {
	f := &failure{code: e.GetCode(), message: e.GetMessage()}
	if f.message == "" {
		f.message = "the request failed: " + f.code
	}
	switch f.code {
	case envelope.ReasonUnknownModel:
		f.status = http.StatusNotFound
	case "deadline_exceeded":
		f.status = http.StatusGatewayTimeout
	case "backend_unavailable", "circuit_open":
		f.status, f.retryAfter = http.StatusServiceUnavailable, time.Second
	default:
		f.status = http.StatusBadGateway
	}
	return f
}

// oaiUsage is OpenAI's token usage.
type oaiUsage struct {
	PromptTokens     int32 `json:"prompt_tokens"`
	CompletionTokens int32 `json:"completion_tokens"`
	TotalTokens      int32 `json:"total_tokens"`
}

func usageOf(f *pb.Final) oaiUsage {
	u := f.GetUsage()
	return oaiUsage{PromptTokens: u.GetPromptTokens(), CompletionTokens: u.GetCompletionTokens(), TotalTokens: u.GetTotalTokens()}
}

// oaiMessage is the message of a completion's choice.
type oaiMessage struct {
	Role    string  `json:"role"`
	Content string  `json:"content"`
	Refusal *string `json:"refusal"`
}

type oaiChoice struct {
	Index        int        `json:"index"`
	Message      oaiMessage `json:"message"`
	FinishReason string     `json:"finish_reason"`
	Logprobs     *struct{}  `json:"logprobs"`
}

// oaiCompletion is a chat.completion object.
type oaiCompletion struct {
	ID      string      `json:"id"`
	Object  string      `json:"object"`
	Created int64       `json:"created"`
	Model   string      `json:"model"`
	Choices []oaiChoice `json:"choices"`
	Usage   oaiUsage    `json:"usage"`
}

// oaiDelta is the delta of a streamed chunk's choice.
type oaiDelta struct {
	Role    string  `json:"role,omitempty"`
	Content *string `json:"content,omitempty"`
}

type oaiChunkChoice struct {
	Index        int       `json:"index"`
	Delta        oaiDelta  `json:"delta"`
	FinishReason *string   `json:"finish_reason"`
	Logprobs     *struct{} `json:"logprobs"`
}

// oaiChunk is a chat.completion.chunk object. With include_usage, every
// chunk has "usage": null but the last, whose choices are empty.
type oaiChunk struct {
	ID      string           `json:"id"`
	Object  string           `json:"object"`
	Created int64            `json:"created"`
	Model   string           `json:"model"`
	Choices []oaiChunkChoice `json:"choices"`
	Usage   *oaiUsage        `json:"usage,omitempty"`
	// withUsage writes "usage": null when Usage is nil.
	withUsage bool
}

// MarshalJSON writes the chunk, with "usage": null on the chunks before
// the last when the client asked for usage.
func (c oaiChunk) MarshalJSON() ([]byte, error) {
	type plain oaiChunk // without the method
	if !c.withUsage || c.Usage != nil {
		return json.Marshal(plain(c))
	}
	return json.Marshal(struct {
		plain
		Usage *oaiUsage `json:"usage"`
	}{plain: plain(c)})
}

func finishReason(f *pb.Final) string {
	if r := f.GetFinishReason(); r != "" {
		return r
	}
	return "stop"
}

// completion is what every answer of one call shares.
type completion struct {
	id           string
	created      int64
	model        string
	includeUsage bool
}

func (c *completion) object(f *pb.Final) oaiCompletion {
	return oaiCompletion{ID: c.id, Object: "chat.completion", Created: c.created, Model: c.model,
		Choices: []oaiChoice{{Message: oaiMessage{Role: "assistant", Content: f.GetContent()}, FinishReason: finishReason(f)}},
		Usage:   usageOf(f)}
}

func (c *completion) chunk(d oaiDelta, finish *string) oaiChunk {
	return oaiChunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model,
		Choices: []oaiChunkChoice{{Delta: d, FinishReason: finish}}, withUsage: c.includeUsage}
}

// completionID is the completion ID of a request: the same for every
// answer of the same request ID (an Idempotency-Key repeat).
func completionID(requestID string) string { return "chatcmpl-" + requestID }

// handleChatCompletions is POST /v1/chat/completions: the request is
// checked and produced as every other (order, admission, limits,
// Idempotency-Key), then the call waits for its answer on the results
// topic, up to OpenAI.Timeout. A client that goes away leaves its request
// in Kafka; it is processed, and its answer is dropped.
func (in *Ingress) handleChatCompletions(w http.ResponseWriter, r *http.Request) {
	fail := func(f *failure) {
		in.reject("openai", f)
		writeOpenAIFailure(w, f)
	}
	t, f := in.authenticate(r.Header.Get("Authorization"))
	if f != nil {
		fail(f)
		return
	}
	b, f := readBody(w, r, in.cfg.MaxBodyBytes)
	if f != nil {
		fail(f)
		return
	}
	cr, f := decodeChatRequest(b)
	if f != nil {
		fail(f)
		return
	}
	key, conv := r.Header.Get("Idempotency-Key"), r.Header.Get(HeaderConversationID)
	var requestID string
	switch {
	case key != "" && !validIdempotencyKey(key):
		fail(badRequest("Idempotency-Key", "must be at most %d printable ASCII characters without spaces", MaxIdempotencyKeyLen))
		return
	case key != "":
		requestID = RequestIDForKey(t.Name, key)
	default:
		requestID = uuid.Must(uuid.NewV7()).String()
	}
	if conv == "" {
		conv = requestID // a conversation of its own; the same for a repeat with the same key
	}
	ctx := r.Context()
	readyCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	f = in.answers.wait(readyCtx)
	cancel()
	if f != nil {
		fail(f)
		return
	}
	wt, f := in.answers.register(requestID, t.Name, cr.body.Stream)
	if f != nil {
		fail(f)
		return
	}
	defer in.answers.unregister(wt)
	if f := memoryHeader(r, &cr.body); f != nil {
		fail(f)
		return
	}
	p := in.begin(ctx, submission{protocol: "openai", tenant: t, conversationID: conv, idempotencyKey: key,
		requestID: requestID, body: cr.body})
	replay := p.prod == nil && p.f == nil // answered with an earlier request's ack
	a, f := p.wait()
	if f != nil {
		writeOpenAIFailure(w, f)
		return
	}
	deadline := time.Now().Add(in.cfg.OpenAI.Timeout)
	_ = http.NewResponseController(w).SetWriteDeadline(deadline.Add(in.cfg.WriteTimeout))
	var lookups sync.WaitGroup
	defer lookups.Wait()
	lookupCtx, stopLookup := context.WithDeadline(ctx, deadline)
	defer stopLookup()
	if replay {
		// Its answer may have gone by already: search for it too.
		lookups.Go(func() { in.answers.lookup(lookupCtx, wt, conv, a.acceptedAt) })
	}
	c := &completion{id: completionID(requestID), created: a.acceptedAt.Unix(), model: cr.body.Model, includeUsage: cr.includeUsage}
	if cr.body.Stream {
		in.streamAnswer(ctx, w, wt, c, deadline)
		return
	}
	res, f := in.awaitAnswer(ctx, wt, deadline)
	switch {
	case f == nil && res == nil: // the client went away
	case f != nil:
		writeOpenAIFailure(w, f)
	case res.GetError() != nil:
		in.metrics.openaiAnswers.WithLabelValues("error").Inc()
		writeOpenAIFailure(w, resultFailure(res.GetError()))
	default:
		in.metrics.openaiAnswers.WithLabelValues("answered").Inc()
		writeJSON(w, http.StatusOK, c.object(res.GetFinal()))
	}
}

// awaitAnswer waits for wt's terminal result until deadline (then 504),
// the client going away (nil, nil) or ingress stopping (then at most half
// the shutdown grace more, then 503).
func (in *Ingress) awaitAnswer(ctx context.Context, wt *waiter, deadline time.Time) (*pb.Result, *failure) {
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	stop := in.stop
	for {
		select {
		case <-wt.done:
			return wt.final, nil
		case <-ctx.Done():
			in.metrics.openaiAnswers.WithLabelValues("client_gone").Inc()
			return nil, nil
		case <-stop:
			stop = nil
			if d := in.cfg.ShutdownGrace / 2; time.Until(deadline) > d {
				deadline = time.Now().Add(d)
				timer.Reset(d)
			}
		case <-timer.C:
			if stop == nil {
				in.metrics.openaiAnswers.WithLabelValues("shutdown").Inc()
				return nil, &failure{status: http.StatusServiceUnavailable, code: "unavailable", retryAfter: time.Second,
					message: "ingress is stopping; the request was accepted and will be processed: " +
						"repeat it with the same Idempotency-Key to get its answer"}
			}
			in.metrics.openaiAnswers.WithLabelValues("timeout").Inc()
			return nil, &failure{status: http.StatusGatewayTimeout, code: "timeout", message: fmt.Sprintf(
				"no answer within %s; the request was accepted and will still be processed: "+
					"repeat it with the same Idempotency-Key to get its answer", in.cfg.OpenAI.Timeout)}
		}
	}
}

// sse writes OpenAI's server-sent events: "data: JSON\n\n", flushed.
type sse struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func (s *sse) data(v any) {
	if s.err != nil {
		return
	}
	b, err := json.Marshal(v)
	if err != nil {
		s.err = err
		return
	}
	s.raw(b)
}

func (s *sse) raw(b []byte) {
	if s.err != nil {
		return
	}
	buf := make([]byte, 0, len(b)+8)
	buf = append(append(append(buf, "data: "...), b...), "\n\n"...)
	if _, s.err = s.w.Write(buf); s.err == nil {
		s.err = s.rc.Flush()
	}
}

// streamAnswer answers a streamed request as OpenAI does: chunks of
// deltas, a last chunk with the finish reason, the usage chunk when asked,
// then "data: [DONE]". The text sent is the answer's: chunks are taken in
// order from one attempt of one run; when the answer restarts (a retry, a
// rerun) or chunks were dropped, later chunks are skipped and the final
// result, which holds the whole text, sends the rest. A failure after the
// first byte is an error event ({"error":{...}}) without [DONE].
func (in *Ingress) streamAnswer(ctx context.Context, w http.ResponseWriter, wt *waiter, c *completion, deadline time.Time) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	out := &sse{w: w, rc: http.NewResponseController(w)}
	empty := ""
	out.data(c.chunk(oaiDelta{Role: "assistant", Content: &empty}, nil))
	var sent strings.Builder
	var run string
	var attempt, next int32
	skip := false
	take := func(res *pb.Result) {
		ch := res.GetChunk()
		if skip {
			return
		}
		if next == 0 && ch.GetIndex() == 0 && run == "" {
			run, attempt = res.GetRunId(), res.GetAttempt()
		}
		if res.GetRunId() != run || res.GetAttempt() != attempt || ch.GetIndex() != next {
			skip = true
			return
		}
		next++
		d := ch.GetDelta()
		sent.WriteString(d)
		out.data(c.chunk(oaiDelta{Content: &d}, nil))
	}
	fail := func(f *failure) {
		_, e := openAIError(f)
		out.data(map[string]oaiError{"error": e})
	}
	waitCtx, stopWait := context.WithCancel(ctx)
	defer stopWait()
	finalC := make(chan struct{})
	var res *pb.Result
	var f *failure
	go func() {
		// awaitAnswer owns the timing rules; chunks are taken meanwhile.
		// The handler waits for it on every path.
		res, f = in.awaitAnswer(waitCtx, wt, deadline)
		close(finalC)
	}()
	for waiting := true; waiting; {
		select {
		case ch := <-wt.chunks:
			take(ch)
			if out.err != nil { // the client is gone
				stopWait()
				<-finalC
				return
			}
		case <-finalC:
			waiting = false
		}
	}
	for draining := true; draining; {
		select {
		case ch := <-wt.chunks:
			take(ch)
		default:
			draining = false
		}
	}
	switch {
	case f == nil && res == nil:
		return
	case f != nil:
		fail(f)
		return
	case res.GetError() != nil:
		in.metrics.openaiAnswers.WithLabelValues("error").Inc()
		fail(resultFailure(res.GetError()))
		return
	}
	final := res.GetFinal()
	content := final.GetContent()
	if !strings.HasPrefix(content, sent.String()) {
		in.metrics.openaiAnswers.WithLabelValues("restarted").Inc()
		fail(&failure{status: http.StatusBadGateway, code: "answer_restarted",
			message: "the answer was restarted (a backend retry) after part of it was streamed, and the streamed part is not " +
				"the final answer's; repeat the request with the same Idempotency-Key to get the final answer"})
		return
	}
	if rest := content[sent.Len():]; rest != "" {
		out.data(c.chunk(oaiDelta{Content: &rest}, nil))
	}
	reason := finishReason(final)
	out.data(c.chunk(oaiDelta{}, &reason))
	if c.includeUsage {
		u := usageOf(final)
		out.data(oaiChunk{ID: c.id, Object: "chat.completion.chunk", Created: c.created, Model: c.model,
			Choices: []oaiChunkChoice{}, Usage: &u, withUsage: true})
	}
	out.raw([]byte("[DONE]"))
	in.metrics.openaiAnswers.WithLabelValues("answered").Inc()
}

// oaiModel is one entry of GET /v1/models.
type oaiModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
}

type oaiModelList struct {
	Object string     `json:"object"`
	Data   []oaiModel `json:"data"`
}

// servedModels returns the models the tenant of the request may use, from
// the catalog the router-workers publish, sorted.
func (in *Ingress) servedModels(w http.ResponseWriter, r *http.Request) ([]oaiModel, bool) {
	t, f := in.authenticate(r.Header.Get("Authorization"))
	if f == nil && !in.modelsKnown() {
		f = &failure{status: http.StatusServiceUnavailable, code: "unavailable", retryAfter: time.Second,
			message: "the models catalog has not been read yet"}
	}
	if f != nil {
		in.reject("openai", f)
		writeOpenAIFailure(w, f)
		return nil, false
	}
	l, _ := in.models.Latest()
	names := slices.Clone(l.Models)
	slices.Sort(names)
	out := []oaiModel{}
	for _, name := range slices.Compact(names) {
		if t.AllowsModel(name) {
			out = append(out, oaiModel{ID: name, Object: fieldModel, Created: l.PublishedAt.Unix(), OwnedBy: "switchboard"})
		}
	}
	return out, true
}

func (in *Ingress) modelsKnown() bool { return in.models.Known() }

// handleModels is GET /v1/models: the models of the catalog the tenant
// may use (503 until the catalog has been read).
func (in *Ingress) handleModels(w http.ResponseWriter, r *http.Request) {
	models, ok := in.servedModels(w, r)
	if ok {
		writeJSON(w, http.StatusOK, oaiModelList{Object: "list", Data: models})
	}
}

// handleModel is GET /v1/models/{model}: one model, or 404
// model_not_found.
func (in *Ingress) handleModel(w http.ResponseWriter, r *http.Request) {
	models, ok := in.servedModels(w, r)
	if !ok {
		return
	}
	name := r.PathValue(fieldModel)
	for _, m := range models {
		if m.ID == name {
			writeJSON(w, http.StatusOK, m)
			return
		}
	}
	f := &failure{status: http.StatusNotFound, code: "unknown_model", field: fieldModel,
		message: fmt.Sprintf("the model %q does not exist or you do not have access to it", name)}
	in.reject("openai", f)
	writeOpenAIFailure(w, f)
}
