// Package modelsim is an OpenAI-compatible model server for development,
// tests and load tests. It stands where vLLM, Ollama, llama.cpp or OpenAI
// stand in production: at the far end of the router worker's LLM call
// (internal/llm), after a request has been consumed from Kafka and before
// its answer is produced back.
//
// It serves the part of the chat-completions protocol Switchboard uses:
//
//   - POST /v1/chat/completions, as a JSON chat.completion or, with
//     "stream": true, as server-sent chat.completion.chunk events ending
//     with "data: [DONE]" (plus a usage chunk when
//     stream_options.include_usage is set);
//   - GET /v1/models, the served models in OpenAI's list format;
//   - GET /healthz, "ok";
//   - GET /debug/requests[?last=TEXT], the messages of the 256 most recent
//     chat requests (oldest first; with last, those whose last message
//     contains TEXT), so tests can see what a model was sent.
//
// Errors use OpenAI's body, {"error": {"message", "type", "code"}}.
//
// # Content
//
// The answer is a function of the request's messages only: an FNV-1a hash
// of the roles and contents seeds a PRNG that picks the completion length
// (between Config.MinCompletionTokens and Config.MaxCompletionTokens) and
// words from a built-in list. The same messages always give the same words;
// max_tokens truncates that word sequence (finish_reason "length"), so a
// capped answer is a prefix of the uncapped one. One word counts as one
// token. prompt_tokens is the number of whitespace-separated words in the
// messages plus a small per-message overhead.
//
// # Latency
//
// Each request draws a latency L from a PRNG seeded by Config.Seed: with
// probability Config.LongTailFraction it is Config.LongTailLatency, otherwise
// Config.BaseLatency, and a uniform jitter in [-Config.Jitter, +Config.Jitter]
// is added (never below zero). A JSON answer is written after L. A stream of
// n tokens writes its headers and the role chunk at once, then spreads L over
// n+1 equal gaps: the first content delta comes after L/(n+1) (the time to
// first token), each further delta L/(n+1) later, and the finish chunk,
// usage chunk and [DONE] at about L. A cancelled request context (the client
// went away) stops the wait or the stream at once.
//
// # Faults
//
// Config.Faults (and Server.SetFaults, while serving) makes a share of the
// requests misbehave as real backends do: error answers by status (429
// and 503 with Retry-After and retry-after-ms when Faults.RetryAfter is
// set), hangs that never answer, connection resets (a TCP reset before a
// JSON answer, a cut halfway through a stream) and a slow first token.
// Fault draws come from their own PRNG, seeded from Config.Seed, so faults
// do not change the latencies of a seeded run. Several servers on
// different ports (the modelsim binary's --addr takes a list) stand for
// several backends.
package modelsim
