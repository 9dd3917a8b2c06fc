package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// nameOpenAI names the driver that calls ingress's OpenAI-compatible API
// and the reader that takes the answers those calls return.
const nameOpenAI = "openai"

// openaiDriver calls POST /v1/chat/completions on ingress. The call
// returns the answer, so the driver is also a Reader ("openai"): every
// answer a call returns (the completion, or the stream's deltas and its
// end) is delivered to the ledger as it arrives, before Send returns. With
// another reader (sse, kafka) the calls still wait for their answers and
// the ledger counts what that reader sees (the loadtest_id travels in the
// request's metadata, which the API maps).
//
// Send returns nil once the call got its whole answer (Kafka acknowledged
// the request long before); the API takes only the interactive lane, so a
// batch message is refused with code "openai_batch_lane".
type openaiDriver struct {
	base   string
	key    string
	client *http.Client

	mu      sync.Mutex
	deliver func(Answer) // set by Open; nil: another reader counts
}

func newOpenAIDriver(ingressURL, apiKey string, timeout time.Duration) *openaiDriver {
	return &openaiDriver{base: strings.TrimRight(ingressURL, "/"), key: apiKey,
		client: &http.Client{Transport: newTransport(), Timeout: timeout}}
}

func (d *openaiDriver) Name() string { return nameOpenAI }

// Open makes the driver deliver the answers of its calls.
func (d *openaiDriver) Open(_ context.Context, deliver func(Answer)) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.deliver = deliver
	return nil
}

// Watch does nothing: a call's answer comes on the call.
func (d *openaiDriver) Watch(context.Context, string) error { return nil }

func (d *openaiDriver) Close() {
	d.mu.Lock()
	d.deliver = nil
	d.mu.Unlock()
	d.client.CloseIdleConnections()
}

func (d *openaiDriver) emit(a Answer) {
	d.mu.Lock()
	deliver := d.deliver
	d.mu.Unlock()
	if deliver != nil {
		a.At = time.Now()
		deliver(a)
	}
}

func (d *openaiDriver) Send(ctx context.Context, m Message) error {
	if m.Lane == envelope.LaneBatch {
		return &SendError{Code: "openai_batch_lane", Err: errors.New("the OpenAI-compatible API takes only the interactive lane")}
	}
	// The native fields but the lane (the API's is interactive), and no
	// max_tokens of 0 (the API wants at least 1 when it is sent).
	body := requestFields(m)
	delete(body, "lane")
	if m.MaxTokens <= 0 {
		delete(body, "max_tokens")
	}
	if m.Stream {
		body["stream_options"] = map[string]bool{"include_usage": true}
	}
	b, _ := json.Marshal(body)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/chat/completions", bytes.NewReader(b))
	if err != nil {
		return &SendError{Code: "request", Err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-Switchboard-Conversation-Id", m.Conversation)
	if m.IdempotencyKey != "" {
		req.Header.Set("Idempotency-Key", m.IdempotencyKey)
	}
	if d.key != "" {
		req.Header.Set("Authorization", "Bearer "+d.key)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return &SendError{Code: transportCode(err), Err: err}
	}
	defer resp.Body.Close()
	base := Answer{ID: m.ID, Conversation: m.Conversation, Attempt: 1}
	if resp.StatusCode != http.StatusOK {
		err := openaiSendError(resp)
		var se *SendError
		if errors.As(err, &se) && resultErrorCodes[strings.TrimPrefix(se.Code, fmt.Sprintf("http_%d_", se.Status))] {
			base.Kind, base.ErrorCode = Failed, strings.TrimPrefix(se.Code, fmt.Sprintf("http_%d_", se.Status))
			d.emit(base)
			return nil // accepted and answered, with an error result
		}
		return err
	}
	if !m.Stream {
		var c struct {
			ID string `json:"id"`
		}
		if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<20)).Decode(&c); err != nil {
			return &SendError{Code: "openai_bad_answer", Status: resp.StatusCode, Err: err}
		}
		base.RequestID, base.Kind = strings.TrimPrefix(c.ID, "chatcmpl-"), Final
		d.emit(base)
		return nil
	}
	return d.readStream(resp.Body, base)
}

// readStream delivers a streamed answer: a chunk per content delta, then
// the final at [DONE], or a failure at an error event.
func (d *openaiDriver) readStream(r io.Reader, base Answer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var index int32
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			a := base
			a.Kind = Final
			d.emit(a)
			return nil
		}
		var ev struct {
			ID      string `json:"id"`
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
			} `json:"choices"`
			Error *struct {
				Code string `json:"code"`
			} `json:"error"`
		}
		if err := json.Unmarshal([]byte(data), &ev); err != nil {
			return &SendError{Code: "openai_bad_event", Status: http.StatusOK, Err: err}
		}
		if ev.Error != nil {
			if !resultErrorCodes[ev.Error.Code] { // the call's own failure (timeout, shutdown)
				return &SendError{Code: "openai_stream_" + ev.Error.Code, Status: http.StatusOK, Err: errors.New(data)}
			}
			a := base
			a.Kind, a.ErrorCode = Failed, ev.Error.Code
			d.emit(a)
			return nil // accepted and answered, with an error result
		}
		base.RequestID = strings.TrimPrefix(ev.ID, "chatcmpl-")
		if len(ev.Choices) > 0 && ev.Choices[0].Delta.Content != "" {
			a := base
			a.Kind, a.ChunkIndex = Chunk, index
			index++
			d.emit(a)
		}
	}
	err := sc.Err()
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return &SendError{Code: "openai_stream_cut", Status: http.StatusOK, Err: err}
}

// resultErrorCodes are the codes of router-worker's error results: a call
// answered with one was accepted and answered (Failed), unlike a refusal.
var resultErrorCodes = map[string]bool{"backend_error": true, "backend_unavailable": true, "circuit_open": true,
	"deadline_exceeded": true, "result_too_large": true}

// openaiSendError turns a refused call into a SendError coded like the
// http driver's: http_<status>_<code>.
func openaiSendError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var e struct {
		Error struct {
			Code    *string `json:"code"`
			Message string  `json:"message"`
		} `json:"error"`
	}
	code := "no_json_error"
	if json.Unmarshal(b, &e) == nil && e.Error.Code != nil {
		code = *e.Error.Code
	}
	return &SendError{Code: fmt.Sprintf("http_%d_%s", resp.StatusCode, code), Status: resp.StatusCode, Err: errors.New(strings.TrimSpace(string(b))),
		RetryAfter: retryAfterHeader(resp.Header)}
}
