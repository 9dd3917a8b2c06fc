package modelsim

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// maxBodyBytes bounds a request body.
const maxBodyBytes = 8 << 20

// Server answers chat-completions requests; see the package documentation.
// It is safe for concurrent use and holds no goroutines of its own: all work
// runs in the handler's request goroutines.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	models  map[string]bool
	latency *latencySource
	seq     atomic.Uint64 // numbers completion ids
	faults  atomic.Pointer[Faults]
	draws   *latencySource // uniform draws for faults, apart from latencies
	// received holds the recent requests' messages (GET /debug/requests).
	received received
}

// New returns a Server for cfg. A nil logger discards logs.
func New(cfg Config, logger *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	models := make(map[string]bool, len(cfg.Models))
	for _, m := range cfg.Models {
		models[m] = true
	}
	model := latencyModel{
		base:             cfg.BaseLatency,
		jitter:           cfg.Jitter,
		longTail:         cfg.LongTailLatency,
		longTailFraction: cfg.LongTailFraction,
	}
	s := &Server{
		cfg:     cfg,
		logger:  logger,
		models:  models,
		latency: newLatencySource(model, cfg.Seed),
		draws:   newLatencySource(latencyModel{}, cfg.Seed+1),
	}
	s.faults.Store(&cfg.Faults)
	return s, nil
}

// SetFaults replaces the injected faults; requests already running keep
// the faults they drew.
func (s *Server) SetFaults(f Faults) error {
	if err := f.Validate(); err != nil {
		return fmt.Errorf("modelsim faults: %w", err)
	}
	s.faults.Store(&f)
	return nil
}

// Handler returns the HTTP handler serving POST /v1/chat/completions,
// GET /v1/models, GET /healthz and GET /debug/requests (the messages of the
// recent requests). Other paths answer 404 and wrong methods
// 405, both as OpenAI errors.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/v1/chat/completions", allow(http.MethodPost, http.HandlerFunc(s.handleChat)))
	mux.Handle("/v1/models", allow(http.MethodGet, http.HandlerFunc(s.handleModels)))
	mux.Handle("/healthz", allow(http.MethodGet, http.HandlerFunc(handleHealth)))
	mux.Handle("/debug/requests", allow(http.MethodGet, http.HandlerFunc(s.handleReceived)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{
			Status:  http.StatusNotFound,
			Type:    typeInvalidRequest,
			Code:    "not_found",
			Message: fmt.Sprintf("no route for %s %s", r.Method, r.URL.Path),
		})
	})
	return mux
}

// allow answers 405 to requests whose method is not method (HEAD is allowed
// with GET).
func allow(method string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != method && (method != http.MethodGet || r.Method != http.MethodHead) {
			w.Header().Set("Allow", method)
			writeError(w, &apiError{
				Status:  http.StatusMethodNotAllowed,
				Type:    typeInvalidRequest,
				Code:    "method_not_allowed",
				Message: fmt.Sprintf("method %s not allowed, use %s", r.Method, method),
			})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// handleHealth answers "ok".
func handleHealth(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, "ok")
}

// handleModels lists the served models.
func (s *Server) handleModels(w http.ResponseWriter, _ *http.Request) {
	list := modelList{Object: "list", Data: make([]modelObject, len(s.cfg.Models))}
	for i, m := range s.cfg.Models {
		list.Data[i] = modelObject{ID: m, Object: "model", OwnedBy: "switchboard"}
	}
	writeJSON(w, http.StatusOK, list)
}

// answer is everything needed to write one completion.
type answer struct {
	id           string
	created      int64
	model        string
	words        []string
	finishReason string
	usage        usage
	latency      time.Duration
	slow         time.Duration // extra wait before the first token
	reset        bool          // cut the stream halfway
}

// handleChat answers a chat-completions request.
func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, &apiError{
				Status:  http.StatusRequestEntityTooLarge,
				Type:    typeInvalidRequest,
				Code:    "request_too_large",
				Message: fmt.Sprintf("request body larger than %d bytes", tooLarge.Limit),
			})
			return
		}
		writeError(w, badRequest("invalid_body", fmt.Sprintf("read request body: %v", err)))
		return
	}
	req, apiErr := decodeChatRequest(body)
	if apiErr != nil {
		writeError(w, apiErr)
		return
	}
	if !s.models[req.Model] {
		writeError(w, &apiError{
			Status:  http.StatusNotFound,
			Type:    typeInvalidRequest,
			Code:    "model_not_found",
			Message: fmt.Sprintf("the model %q does not exist; served models: %s", req.Model, strings.Join(s.cfg.Models, ", ")),
		})
		return
	}
	s.received.add(req)
	a := s.answer(req)
	faults := s.faults.Load()
	u, v := s.draws.uniform()
	f := faults.draw(u, v)
	switch {
	case f.status != 0:
		faults.errorAnswer(w, f.status)
		return
	case f.hang:
		<-r.Context().Done()
		return
	case f.reset && !req.Stream:
		resetConnection(w)
		return
	}
	a.slow, a.reset = f.slow, f.reset
	log := s.logger.With(
		slog.String("id", a.id),
		slog.String("model", a.model),
		slog.Bool("stream", req.Stream),
		slog.Duration("latency", a.latency),
	)
	if req.Stream {
		err = s.stream(r.Context(), w, a, req.IncludeUsage)
	} else {
		err = s.complete(r.Context(), w, a)
	}
	if err != nil {
		log.Debug("chat completion stopped", slog.Any("error", err))
		return
	}
	log.Debug("chat completion done",
		slog.Int("prompt_tokens", a.usage.PromptTokens),
		slog.Int("completion_tokens", a.usage.CompletionTokens))
}

// answer computes the answer to req and draws its latency.
func (s *Server) answer(req chatRequest) answer {
	words := completion(req.Messages, s.cfg.MinCompletionTokens, s.cfg.MaxCompletionTokens)
	finish := "stop"
	if req.MaxTokens > 0 && len(words) > req.MaxTokens {
		words, finish = words[:req.MaxTokens], "length"
	}
	prompt := promptTokens(req.Messages)
	return answer{
		id:           fmt.Sprintf("chatcmpl-sim-%d", s.seq.Add(1)),
		created:      time.Now().Unix(),
		model:        req.Model,
		words:        words,
		finishReason: finish,
		usage: usage{
			PromptTokens:     prompt,
			CompletionTokens: len(words),
			TotalTokens:      prompt + len(words),
		},
		latency: s.latency.next(),
	}
}

// complete writes a as a chat.completion after its latency.
func (s *Server) complete(ctx context.Context, w http.ResponseWriter, a answer) error {
	if err := sleep(ctx, a.slow+a.latency); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, completionResponse{
		ID:      a.id,
		Object:  "chat.completion",
		Created: a.created,
		Model:   a.model,
		Choices: []completionChoice{{
			Message:      responseMessage{Role: "assistant", Content: strings.Join(a.words, " ")},
			FinishReason: a.finishReason,
		}},
		Usage: a.usage,
	})
	return nil
}

// sleep waits for d or until ctx is done, whichever is first.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return fmt.Errorf("wait: %w", context.Cause(ctx))
	case <-t.C:
		return nil
	}
}
