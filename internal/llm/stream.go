package llm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

// Stream makes a streaming call with stream_options.include_usage set. It
// calls onDelta, from the calling goroutine, with each non-empty content
// delta in order; an error from onDelta aborts the call and is returned
// wrapped. A nil onDelta is allowed. Stream returns once "data: [DONE]"
// arrives, with the whole content, the finish reason and the usage of the
// final usage chunk (zero if the backend sent none). A stream that ends
// cleanly after its finish reason but without [DONE] is accepted too.
//
// It is bounded by ctx, Config.TotalTimeout and Config.FirstTokenTimeout;
// failures are *Error values except when ctx ends or onDelta fails (see the
// package documentation). If the backend ignores "stream" and answers JSON,
// the answer is delivered as a single delta.
func (c *Client) Stream(ctx context.Context, req ChatRequest, onDelta func(delta string) error) (*ChatResponse, error) {
	if onDelta == nil {
		onDelta = func(string) error { return nil }
	}
	totalCtx, cancelTotal := context.WithTimeoutCause(ctx, c.cfg.TotalTimeout, errTotalTimeout)
	defer cancelTotal()
	callCtx, cancel := context.WithCancelCause(totalCtx)
	defer cancel(nil)
	firstToken := time.AfterFunc(c.cfg.FirstTokenTimeout, func() { cancel(errFirstTokenTimeout) })
	defer firstToken.Stop()

	resp, err := c.post(ctx, callCtx, req, true)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, time.Now())
	}

	s := streamState{onDelta: onDelta}
	if mediaType, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mediaType == "application/json" {
		return s.fromJSON(ctx, callCtx, c, resp.Body, firstToken)
	}
	events := newSSEReader(resp.Body, maxEventBytes)
	var chunk wireChunk // one for the stream: decoding takes it as an interface, so it lives on the heap
	for {
		ev, err := events.next()
		switch {
		case errors.Is(err, io.EOF):
			if s.finishReason != "" { // complete, only [DONE] is missing
				return s.response(), nil
			}
			return nil, &Error{Code: CodeStreamTruncated, Message: "stream ended before [DONE]", Retryable: true}
		case errors.Is(err, errEventTooLarge):
			return nil, invalidResponse("read stream", err)
		case err != nil:
			return nil, c.callError(ctx, callCtx, err)
		}
		if bytes.Equal(ev.Data, []byte("[DONE]")) {
			return s.response(), nil
		}
		if ev.Name == "error" {
			return nil, streamError(ev.Data)
		}
		chunk = wireChunk{}
		if err := decodeJSON(ev.Data, &chunk); err != nil {
			return nil, invalidResponse("decode chunk", err)
		}
		if !isNull(chunk.Error) {
			return nil, streamError(ev.Data)
		}
		if err := s.apply(&chunk, firstToken); err != nil {
			return nil, c.timerError(ctx, callCtx, err)
		}
	}
}

// streamState accumulates a stream's answer.
type streamState struct {
	onDelta      func(string) error
	content      strings.Builder
	finishReason string
	usage        Usage
	firstTokenAt time.Time
	generated    bool // whether any token, content or reasoning, arrived
}

// errFirstTokenLate reports a first token that arrived as the first-token
// timer fired; the call context is being cancelled.
var errFirstTokenLate = errors.New("first token arrived after the first-token timeout")

// apply takes in one chunk: choice 0's deltas, finish reason and usage.
func (s *streamState) apply(chunk *wireChunk, firstToken *time.Timer) error {
	if chunk.Usage != nil {
		s.usage = chunk.Usage.usage()
	}
	for _, ch := range chunk.Choices {
		if ch.Index != 0 {
			continue
		}
		d := ch.Delta
		for _, r := range []*string{d.Content, d.ReasoningContent, d.Reasoning} {
			if r != nil && *r != "" && !s.generated {
				s.generated = true
				if !firstToken.Stop() {
					return errFirstTokenLate
				}
			}
		}
		if d.Content != nil && *d.Content != "" {
			if s.firstTokenAt.IsZero() {
				s.firstTokenAt = time.Now()
			}
			s.content.WriteString(*d.Content)
			if err := s.onDelta(*d.Content); err != nil {
				return fmt.Errorf("llm: deliver delta: %w", err)
			}
		}
		if ch.FinishReason != nil && *ch.FinishReason != "" {
			s.finishReason = *ch.FinishReason
		}
	}
	return nil
}

// fromJSON takes in a JSON answer to a streaming call as one delta.
func (s *streamState) fromJSON(ctx, callCtx context.Context, c *Client, body io.Reader, firstToken *time.Timer) (*ChatResponse, error) {
	data, err := io.ReadAll(io.LimitReader(body, maxResponseBytes+1))
	if err != nil {
		return nil, c.callError(ctx, callCtx, err)
	}
	if len(data) > maxResponseBytes {
		return nil, &Error{Code: CodeInvalidResponse, Message: fmt.Sprintf("answer larger than %d bytes", maxResponseBytes)}
	}
	out, err := parseCompletion(data)
	if err != nil {
		return nil, err
	}
	chunk := wireChunk{Choices: []wireChunkChoice{{
		Delta:        wireDelta{Content: &out.Content},
		FinishReason: &out.FinishReason,
	}}}
	if err := s.apply(&chunk, firstToken); err != nil {
		return nil, c.timerError(ctx, callCtx, err)
	}
	s.usage = out.Usage
	return s.response(), nil
}

// timerError returns err from apply, turning a late first token into the
// first-token timeout error.
func (c *Client) timerError(ctx, callCtx context.Context, err error) error {
	if errors.Is(err, errFirstTokenLate) {
		<-callCtx.Done() // the timer's cancel is running
		return c.callError(ctx, callCtx, err)
	}
	return err
}

// response returns the accumulated answer.
func (s *streamState) response() *ChatResponse {
	return &ChatResponse{
		Content:      s.content.String(),
		FinishReason: s.finishReason,
		Usage:        s.usage,
		FirstTokenAt: s.firstTokenAt,
	}
}
