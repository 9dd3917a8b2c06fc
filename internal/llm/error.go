package llm

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Codes of the errors the client raises itself. Errors answered by a
// backend carry the backend's code instead.
const (
	// CodeTimeout: Config.TotalTimeout or Config.ConnectTimeout expired.
	CodeTimeout = "timeout"
	// CodeFirstTokenTimeout: Config.FirstTokenTimeout expired.
	CodeFirstTokenTimeout = "first_token_timeout"
	// CodeConnection: the connection failed or broke.
	CodeConnection = "connection_error"
	// CodeStreamTruncated: a stream ended before "data: [DONE]".
	CodeStreamTruncated = "stream_truncated"
	// CodeInvalidResponse: the backend answered something unreadable.
	CodeInvalidResponse = "invalid_response"
)

// maxErrorBodyBytes bounds how much of an error answer is read.
const maxErrorBodyBytes = 64 << 10

// Error is a failed call: an error answer from the backend, a timeout, a
// broken connection or a malformed answer.
type Error struct {
	// StatusCode is the HTTP status of an error answer; zero when there was
	// none (timeouts, connection failures, errors inside a stream).
	StatusCode int
	// Code is the backend's error code (or its type when it sent no code),
	// or one of the Code constants for errors the client raises.
	Code string
	// Message is the backend's error message or a description.
	Message string
	// Retryable reports whether the same call may succeed if retried.
	Retryable bool
	// RetryAfter is how long the backend asked the caller to wait; zero
	// when it did not say.
	RetryAfter time.Duration

	err error // the underlying error, if any
}

// Error returns "llm: status 429 rate_limit_exceeded: message", leaving out
// the parts that are unset.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("llm:")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, " status %d", e.StatusCode)
	}
	if e.Code != "" {
		b.WriteString(" ")
		b.WriteString(e.Code)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	return b.String()
}

// Unwrap returns the underlying error, such as a *net.OpError or
// context.DeadlineExceeded, or nil.
func (e *Error) Unwrap() error { return e.err }

// IsRetryable reports whether err is, or wraps, an *Error that may succeed
// if the call is retried.
func IsRetryable(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Retryable
}

// RetryAfter returns how long the backend asked to wait before a retry, or
// zero when err wraps no *Error or the backend did not say.
func RetryAfter(err error) time.Duration {
	var e *Error
	if errors.As(err, &e) {
		return e.RetryAfter
	}
	return 0
}

// Causes of the client's own timeouts, set on the call context.
var (
	errTotalTimeout      = errors.New("total timeout")
	errFirstTokenTimeout = errors.New("first token timeout")
)

// callError turns err, which failed a call on callCtx (derived from the
// caller's ctx), into the error to return.
func (c *Client) callError(ctx, callCtx context.Context, err error) error {
	if ctx.Err() != nil { // the caller gave up; not ours to retry
		return fmt.Errorf("llm: %w", context.Cause(ctx))
	}
	switch cause := context.Cause(callCtx); {
	case errors.Is(cause, errTotalTimeout):
		return &Error{Code: CodeTimeout, Message: fmt.Sprintf("no complete answer within %v", c.cfg.TotalTimeout),
			Retryable: true, err: context.DeadlineExceeded}
	case errors.Is(cause, errFirstTokenTimeout):
		return &Error{Code: CodeFirstTokenTimeout, Message: fmt.Sprintf("no first token within %v", c.cfg.FirstTokenTimeout),
			Retryable: true, err: context.DeadlineExceeded}
	}
	return transportError(err)
}

// transportError classifies a failure to reach the backend or to read its
// answer. Everything is retryable except certificate failures.
func transportError(err error) *Error {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	if errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &hostname) || errors.As(err, &invalid) {
		return &Error{Code: CodeConnection, Message: err.Error(), err: err}
	}
	var netErr net.Error
	if errors.As(err, &netErr) && netErr.Timeout() {
		return &Error{Code: CodeTimeout, Message: err.Error(), Retryable: true, err: err}
	}
	return &Error{Code: CodeConnection, Message: err.Error(), Retryable: true, err: err}
}

// invalidResponse is a malformed answer that arrived whole: the backend's
// bug, not retryable. (An answer cut short by the connection fails reading,
// as a retryable connection error.)
func invalidResponse(msg string, err error) *Error {
	return &Error{Code: CodeInvalidResponse, Message: fmt.Sprintf("%s: %v", msg, err), err: err}
}

// retryableStatus reports whether a call answered with status may succeed
// if retried.
func retryableStatus(status int) bool {
	switch status {
	case http.StatusRequestTimeout, http.StatusTooEarly, http.StatusTooManyRequests:
		return true
	default:
		return status >= 500
	}
}

// statusError reads the error answer resp (status other than 200).
func statusError(resp *http.Response, now time.Time) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes)) // a partial body still helps
	e := parseErrorBody(body)
	e.StatusCode = resp.StatusCode
	e.Retryable = retryableStatus(resp.StatusCode)
	e.RetryAfter = parseRetryAfter(resp.Header, now)
	if e.Message == "" {
		e.Message = http.StatusText(resp.StatusCode)
	}
	return e
}

// streamError is an error event inside a stream. A numeric code is taken
// as an HTTP status to classify it; otherwise it is retryable, as failures
// after a successful start usually are the server's.
func streamError(data []byte) *Error {
	e := parseErrorBody(data)
	e.Retryable = true
	if status, err := strconv.Atoi(e.Code); err == nil && status >= 400 && status < 600 {
		e.Retryable = retryableStatus(status)
	}
	if e.Message == "" {
		e.Message = "error event in stream"
	}
	return e
}

// wireError is an error answer. OpenAI and most servers nest an object
// under "error"; some vLLM versions put its fields at the top level; Ollama
// sends "error" as a string.
type wireError struct {
	Error   json.RawMessage `json:"error"`
	Message string          `json:"message"`
	Type    string          `json:"type"`
	Code    json.RawMessage `json:"code"`
}

// parseErrorBody reads what it can of an error body; a body that is not
// JSON becomes the message.
func parseErrorBody(body []byte) *Error {
	body = bytes.TrimSpace(body)
	var w wireError
	if err := json.Unmarshal(body, &w); err != nil {
		return &Error{Message: truncate(string(body), 512)}
	}
	if !isNull(w.Error) {
		var msg string
		if json.Unmarshal(w.Error, &msg) == nil {
			return &Error{Message: msg}
		}
		var inner wireError
		if json.Unmarshal(w.Error, &inner) == nil {
			w = inner
		}
	}
	code := jsonScalar(w.Code)
	if code == "" {
		code = w.Type
	}
	return &Error{Code: code, Message: w.Message}
}

// jsonScalar returns a JSON string's value or a number's text, else "".
func jsonScalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// truncate cuts s to at most n bytes.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// parseRetryAfter reads retry-after-ms (milliseconds, sent by OpenAI) or
// Retry-After (seconds or an HTTP date, relative to now). It returns zero
// when neither is present or valid.
func parseRetryAfter(h http.Header, now time.Time) time.Duration {
	if v := strings.TrimSpace(h.Get("Retry-After-Ms")); v != "" {
		if ms, err := strconv.ParseFloat(v, 64); err == nil && ms > 0 && ms < 1e12 {
			return time.Duration(ms * float64(time.Millisecond))
		}
	}
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs <= 0 || secs > 1e9 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0)
	}
	return 0
}
