package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"syscall"
	"time"
)

// httpDriver posts requests to ingress's
// POST /v1/conversations/{id}/messages.
type httpDriver struct {
	base   string
	key    string // bearer token; empty sends none
	client *http.Client
}

// newTransport returns a transport sized for thousands of concurrent
// connections to one host.
func newTransport() *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        0,
		MaxIdleConnsPerHost: 20000,
		IdleConnTimeout:     90 * time.Second,
	}
}

func newHTTPDriver(ingressURL, apiKey string, timeout time.Duration) *httpDriver {
	return &httpDriver{base: strings.TrimRight(ingressURL, "/"), key: apiKey, client: &http.Client{Transport: newTransport(), Timeout: timeout}}
}

func (d *httpDriver) Name() string { return "http" }

func (d *httpDriver) Send(ctx context.Context, m Message) error {
	body, _ := json.Marshal(requestFields(m))
	_, err := d.do(ctx, d.messagesURL(m.Conversation), body, "application/json", m.IdempotencyKey, http.StatusAccepted)
	return err
}

func (d *httpDriver) messagesURL(conv string) string {
	return d.base + "/v1/conversations/" + url.PathEscape(conv) + "/messages"
}

// requestFields are the JSON fields of m's request, as every ingress
// protocol takes them.
func requestFields(m Message) map[string]any {
	return map[string]any{
		"model": m.Model, "stream": m.Stream, "lane": m.Lane, "max_tokens": m.MaxTokens,
		"messages": []map[string]string{{"role": roleUser, "content": m.Content}},
		"metadata": map[string]string{MetadataKey: m.ID},
	}
}

// SendCall posts ms as one batch (POST /v1/messages:batch), which ingress
// stores in the order given per conversation, and returns each item's
// outcome.
func (d *httpDriver) SendCall(ctx context.Context, ms []Message) []error {
	errs := make([]error, len(ms))
	items := make([]map[string]any, len(ms))
	for i, m := range ms {
		items[i] = requestFields(m)
		items[i]["conversation_id"] = m.Conversation
		if m.IdempotencyKey != "" {
			items[i]["idempotency_key"] = m.IdempotencyKey
		}
	}
	body, _ := json.Marshal(map[string]any{"requests": items})
	b, err := d.do(ctx, d.base+"/v1/messages:batch", body, "application/json", "", http.StatusOK)
	if err != nil {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	var answer struct {
		Results []struct {
			Status int `json:"status"`
			Error  *struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(b, &answer); err != nil || len(answer.Results) != len(ms) {
		for i := range errs {
			errs[i] = &SendError{Code: "bad_batch_answer", Status: http.StatusOK, Err: fmt.Errorf("batch answer %.200q: %w", b, err)}
		}
		return errs
	}
	for i, r := range answer.Results {
		if r.Status == http.StatusAccepted {
			continue
		}
		code, msg := "no_json_error", ""
		if r.Error != nil {
			code, msg = r.Error.Code, r.Error.Message
		}
		errs[i] = &SendError{Code: fmt.Sprintf("http_%d_%s", r.Status, code), Status: r.Status, Err: errors.New(msg)}
	}
	return errs
}

func (d *httpDriver) SendRaw(ctx context.Context, conv string, bad Bad) error {
	body, ct := bad.httpBody()
	if body == nil {
		return &SendError{Code: "unsupported", Err: fmt.Errorf("bad input %s has no HTTP form", bad.Kind)}
	}
	_, err := d.do(ctx, d.messagesURL(conv), body, ct, "", http.StatusAccepted)
	return err
}

// do posts body to u, with the Idempotency-Key key when not empty, and
// returns the answer's body when its status is want, or a *SendError.
func (d *httpDriver) do(ctx context.Context, u string, body []byte, contentType, key string, want int) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, &SendError{Code: "request", Err: err}
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	if d.key != "" {
		req.Header.Set("Authorization", "Bearer "+d.key)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return nil, &SendError{Code: transportCode(err), Err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode == want && err == nil {
		return b, nil
	}
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	code := "no_json_error"
	if json.Unmarshal(b, &e) == nil && e.Error.Code != "" {
		code = e.Error.Code
	}
	return nil, &SendError{Code: fmt.Sprintf("http_%d_%s", resp.StatusCode, code), Status: resp.StatusCode, Err: errors.New(strings.TrimSpace(string(b))),
		RetryAfter: retryAfterHeader(resp.Header)}
}

func (d *httpDriver) Close() { d.client.CloseIdleConnections() }

// transportCode classifies a failed HTTP exchange.
func transportCode(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connect_refused"
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.EPIPE):
		return "connection_reset"
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	}
	return "http_transport"
}
