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
	body, _ := json.Marshal(map[string]any{
		"model": m.Model, "stream": m.Stream, "lane": m.Lane, "max_tokens": m.MaxTokens,
		"messages": []map[string]string{{"role": "user", "content": m.Content}},
		"metadata": map[string]string{MetadataKey: m.ID},
	})
	return d.post(ctx, m.Conversation, body, "application/json")
}

func (d *httpDriver) SendRaw(ctx context.Context, conv string, bad Bad) error {
	body, ct := bad.httpBody()
	if body == nil {
		return &SendError{Code: "unsupported", Err: fmt.Errorf("bad input %s has no HTTP form", bad.Kind)}
	}
	return d.post(ctx, conv, body, ct)
}

func (d *httpDriver) post(ctx context.Context, conv string, body []byte, contentType string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/v1/conversations/"+url.PathEscape(conv)+"/messages", bytes.NewReader(body))
	if err != nil {
		return &SendError{Code: "request", Err: err}
	}
	req.Header.Set("Content-Type", contentType)
	if d.key != "" {
		req.Header.Set("Authorization", "Bearer "+d.key)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return &SendError{Code: transportCode(err), Err: err}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode == http.StatusAccepted {
		return nil
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
	return &SendError{Code: fmt.Sprintf("http_%d_%s", resp.StatusCode, code), Status: resp.StatusCode, Err: errors.New(strings.TrimSpace(string(b)))}
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
