package modelsim

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// stream writes a as server-sent chat.completion.chunk events, spreading its
// latency over the tokens as the package documentation describes. It
// returns early with an error when ctx is done or a write fails.
func (s *Server) stream(ctx context.Context, w http.ResponseWriter, a answer, includeUsage bool) error {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	var buf bytes.Buffer
	send := func(c chunk) error {
		c.ID, c.Object, c.Created, c.Model = a.id, "chat.completion.chunk", a.created, a.model
		buf.Reset()
		buf.WriteString("data: ")
		if err := json.NewEncoder(&buf).Encode(c); err != nil { // Encode ends with '\n'
			return fmt.Errorf("encode chunk: %w", err)
		}
		buf.WriteByte('\n')
		return writeEvent(rc, w, buf.Bytes())
	}

	empty := ""
	if err := send(chunk{Choices: []chunkChoice{{Delta: delta{Role: "assistant", Content: &empty}}}}); err != nil {
		return err
	}
	gap := a.latency / time.Duration(len(a.words)+1)
	if err := sleep(ctx, a.slow); err != nil {
		return err
	}
	for i, d := range deltas(a.words) {
		if a.reset && i >= max(1, len(a.words)/2) {
			panic(http.ErrAbortHandler) // net/http closes the connection mid-stream
		}
		if err := sleep(ctx, gap); err != nil {
			return err
		}
		if err := send(chunk{Choices: []chunkChoice{{Delta: delta{Content: &d}}}}); err != nil {
			return err
		}
	}
	if err := sleep(ctx, gap); err != nil {
		return err
	}
	finish := a.finishReason
	if err := send(chunk{Choices: []chunkChoice{{FinishReason: &finish}}}); err != nil {
		return err
	}
	if includeUsage {
		if err := send(chunk{Choices: []chunkChoice{}, Usage: &a.usage}); err != nil {
			return err
		}
	}
	return writeEvent(rc, w, []byte("data: [DONE]\n\n"))
}

// writeEvent writes one event and flushes it to the client.
func writeEvent(rc *http.ResponseController, w http.ResponseWriter, event []byte) error {
	if _, err := w.Write(event); err != nil {
		return fmt.Errorf("write event: %w", err)
	}
	if err := rc.Flush(); err != nil {
		return fmt.Errorf("flush event: %w", err)
	}
	return nil
}
