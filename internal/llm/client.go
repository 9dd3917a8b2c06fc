package llm

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// maxResponseBytes bounds a JSON answer.
const maxResponseBytes = 16 << 20

// Client calls one OpenAI-compatible backend. It is safe for concurrent use.
type Client struct {
	cfg       Config
	endpoint  string // {BaseURL}/chat/completions
	transport *http.Transport
	http      *http.Client
}

// New returns a Client for cfg with its own connection pool.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	dialer := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	transport := &http.Transport{
		Proxy:               http.ProxyFromEnvironment,
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: cfg.ConnectTimeout,
		MaxIdleConns:        cfg.MaxConns,
		MaxIdleConnsPerHost: cfg.MaxConns,
		MaxConnsPerHost:     cfg.MaxConns,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &Client{
		cfg:       cfg,
		endpoint:  strings.TrimRight(cfg.BaseURL, "/") + "/chat/completions",
		transport: transport,
		http: &http.Client{
			Transport: transport,
			// A redirected POST would lose its body or method; report it.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}, nil
}

// CloseIdleConnections closes the pool's idle connections, as when the
// client is no longer needed. Calls in flight are not affected.
func (c *Client) CloseIdleConnections() { c.transport.CloseIdleConnections() }

// Complete makes a JSON (non-streaming) call and returns the first choice.
// It is bounded by ctx and Config.TotalTimeout; failures are *Error values
// except when ctx ends (see the package documentation).
func (c *Client) Complete(ctx context.Context, req ChatRequest) (*ChatResponse, error) {
	callCtx, cancel := context.WithTimeoutCause(ctx, c.cfg.TotalTimeout, errTotalTimeout)
	defer cancel()

	resp, err := c.post(ctx, callCtx, req, false)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	arrived := time.Now()
	if resp.StatusCode != http.StatusOK {
		return nil, statusError(resp, arrived)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, c.callError(ctx, callCtx, err)
	}
	if len(body) > maxResponseBytes {
		return nil, &Error{Code: CodeInvalidResponse, Message: fmt.Sprintf("answer larger than %d bytes", maxResponseBytes)}
	}
	out, err := parseCompletion(body)
	if err != nil {
		return nil, err
	}
	out.FirstTokenAt = arrived
	return out, nil
}

// parseCompletion reads the first choice of a chat.completion body.
func parseCompletion(body []byte) (*ChatResponse, error) {
	var w wireCompletion
	if err := decodeJSON(body, &w); err != nil {
		return nil, invalidResponse("decode answer", err)
	}
	for _, ch := range w.Choices {
		if ch.Index != 0 {
			continue
		}
		out := &ChatResponse{Usage: w.Usage.usage()}
		if ch.Message.Content != nil {
			out.Content = *ch.Message.Content
		}
		if ch.FinishReason != nil {
			out.FinishReason = *ch.FinishReason
		}
		return out, nil
	}
	return nil, &Error{Code: CodeInvalidResponse, Message: "answer has no choice 0"}
}

// post sends req on callCtx, derived from the caller's ctx, and returns the
// response or the classified error.
func (c *Client) post(ctx, callCtx context.Context, req ChatRequest, stream bool) (*http.Response, error) {
	body, err := json.Marshal(newWireRequest(req, stream))
	if err != nil {
		return nil, fmt.Errorf("llm: encode request: %w", err)
	}
	hreq, err := http.NewRequestWithContext(callCtx, http.MethodPost, c.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("llm: new request: %w", err)
	}
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("User-Agent", "switchboard-llm")
	if stream {
		hreq.Header.Set("Accept", "text/event-stream")
	} else {
		hreq.Header.Set("Accept", "application/json")
	}
	if c.cfg.APIKey != "" {
		hreq.Header.Set("Authorization", "Bearer "+c.cfg.APIKey)
	}
	resp, err := c.http.Do(hreq)
	if err != nil {
		return nil, c.callError(ctx, callCtx, err)
	}
	return resp, nil
}
