// Package llm is the router worker's client for OpenAI-compatible
// chat-completions servers: modelsim in development and tests, and vLLM,
// Ollama, llama.cpp or OpenAI in production. The worker consumes a request
// from Kafka, calls Complete or Stream here, and produces the answer (or,
// for a stream, each delta as it arrives) back to Kafka.
//
// # Timeouts
//
// Every call is bounded by its context and by Config.TotalTimeout. A
// stream is also bounded by Config.FirstTokenTimeout: the time from the
// start of the call to the first generated token (a non-empty content or
// reasoning delta); the role-only first chunk does not count. A JSON call
// has no first-token bound, since its first byte arrives with its last.
//
// # Errors and retries
//
// The client never retries; the router owns retries. Every failure of the
// call itself is an *Error saying whether a retry may succeed:
//
//   - retryable: 408, 425, 429 and 5xx answers, Config timeouts,
//     connection failures, and streams cut before "data: [DONE]";
//   - not retryable: other 4xx answers (400, 401, 403, 404, 422...),
//     TLS certificate failures, and malformed answers.
//
// Error.RetryAfter carries the server's Retry-After (seconds or HTTP date)
// or retry-after-ms header. IsRetryable and RetryAfter read them through
// wrapping. When the caller's own context ends the error wraps its cause
// (context.Canceled or context.DeadlineExceeded) and is not retryable; an
// error returned by a Stream callback is returned wrapped, as is.
//
// A Client is safe for concurrent use. Its connection pool (Config.MaxConns
// connections per backend) is its own, so one slow backend cannot starve
// another's client.
package llm
