package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// openAIClient is the official client, pointed at an ingress, without its
// own retries (a retry would hide a wrong answer).
func openAIClient(ingressURL, key string) openai.Client {
	return openai.NewClient(option.WithBaseURL(ingressURL+"/v1/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

// waitModels waits until an ingress has read the models catalog the
// router-worker publishes.
func waitModels(ctx context.Context, t *testing.T, ingressURL string) {
	t.Helper()
	err := apptest.Wait(30*time.Second, func() error {
		code, _, body := send(ctx, t, "GET", ingressURL+"/v1/models", "", nil)
		if code != 200 {
			return fmt.Errorf("GET /v1/models: %d %s", code, body)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOpenAIClient speaks to ingress with the official openai-go client:
// models, a completion, the same streamed (with usage), errors, and an
// Idempotency-Key repeat. Every answer went through Kafka, router-worker
// and modelsim.
func TestOpenAIClient(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	s := apptest.StartStack(t, bin, apptest.StackOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	waitModels(ctx, t, s.IngressURL)
	client := openAIClient(s.IngressURL, apptest.DevKey)

	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range page.Data {
		ids = append(ids, m.ID)
	}
	if !slices.Contains(ids, "sim") {
		t.Errorf("models %v, want sim among them", ids)
	}
	if m, err := client.Models.Get(ctx, "sim"); err != nil || m.ID != "sim" || m.Object != "model" {
		t.Errorf("model sim: %+v %v", m, err)
	}

	params := openai.ChatCompletionNewParams{
		Model:               "sim",
		Messages:            []openai.ChatCompletionMessageParamUnion{openai.SystemMessage("Be brief."), openai.UserMessage("Hello, Switchboard!")},
		MaxCompletionTokens: openai.Int(64),
		Temperature:         openai.Float(0.5),
	}
	c, err := client.Chat.Completions.New(ctx, params, option.WithHeader("X-Switchboard-Conversation-Id", "openai-e2e"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(c.ID, "chatcmpl-") || len(c.Choices) != 1 || c.Choices[0].Message.Content == "" ||
		c.Choices[0].FinishReason == "" || c.Usage.TotalTokens == 0 || c.Model != "sim" {
		t.Errorf("completion %+v", c)
	}

	// The same prompt streamed: modelsim answers a prompt deterministically.
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := client.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != c.Choices[0].Message.Content || acc.Usage.TotalTokens != c.Usage.TotalTokens {
		t.Errorf("streamed %+v usage %+v (%d chunks), want %q usage %+v", acc.Choices, acc.Usage, chunks, c.Choices[0].Message.Content, c.Usage)
	}

	// Errors: an unknown model, a bad key.
	var apiErr *openai.Error
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "no-such-model",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 404 || apiErr.Code != "model_not_found" || apiErr.Param != "model" {
		t.Errorf("unknown model: %v, want 404 model_not_found", err)
	}
	wrong := openAIClient(s.IngressURL, "sk-wrong")
	_, err = wrong.Chat.Completions.New(ctx, params)
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 401 || apiErr.Code != "invalid_api_key" {
		t.Errorf("bad key: %v, want 401 invalid_api_key", err)
	}
	_, err = client.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "sim", TopP: openai.Float(0.5),
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 400 || apiErr.Code != "unsupported_parameter" || apiErr.Param != "top_p" {
		t.Errorf("top_p: %v, want 400 unsupported_parameter", err)
	}

	// An Idempotency-Key repeat: the same completion, after the first's
	// answer went by.
	key := option.WithHeader("Idempotency-Key", "openai-e2e-1")
	first, err := client.Chat.Completions.New(ctx, params, key)
	if err != nil {
		t.Fatal(err)
	}
	again, err := client.Chat.Completions.New(ctx, params, key)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || again.Choices[0].Message.Content != first.Choices[0].Message.Content || again.Created != first.Created {
		t.Errorf("repeat: %s %q %d, want %s %q %d", again.ID, again.Choices[0].Message.Content, again.Created,
			first.ID, first.Choices[0].Message.Content, first.Created)
	}
}

// TestOpenAIAnyInstance: a second ingress, sharing nothing with the first
// but Kafka, answers calls, and answers an Idempotency-Key repeat of a call
// the first answered with the same completion, which router-worker copies
// from the first answer instead of calling the model again.
func TestOpenAIAnyInstance(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	s := apptest.StartStack(t, bin, apptest.StackOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	waitModels(ctx, t, s.IngressURL)
	addr := fmt.Sprintf("127.0.0.1:%d", apptest.FreePort(t))
	admin := fmt.Sprintf("127.0.0.1:%d", apptest.FreePort(t))
	apptest.Start(t, "ingress-2", bin["ingress"], append([]string{"--addr", addr, "--admin-addr", admin, "--grpc-addr", "",
		"--brokers", s.Brokers, "--tenants", s.TenantsFile}, s.TopicArgs()...)...)
	if err := apptest.WaitHTTP(ctx, "http://"+admin+"/readyz", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	otherURL := "http://" + addr
	waitModels(ctx, t, otherURL)

	params := openai.ChatCompletionNewParams{Model: "sim",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Which instance?")}}
	key := option.WithHeader("Idempotency-Key", "openai-any-instance")
	one, two := openAIClient(s.IngressURL, apptest.DevKey), openAIClient(otherURL, apptest.DevKey)
	first, err := one.Chat.Completions.New(ctx, params, key)
	if err != nil {
		t.Fatal(err)
	}
	again, err := two.Chat.Completions.New(ctx, params, key)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || again.Choices[0].Message.Content != first.Choices[0].Message.Content {
		t.Errorf("repeat on the other instance: %s %q, want %s %q", again.ID, again.Choices[0].Message.Content,
			first.ID, first.Choices[0].Message.Content)
	}
	// The worker counts the repeat once Kafka has its copy of the answer,
	// which the caller may have read already: wait for the count.
	want := `switchboard_router_duplicate_requests_skipped_total{lane="interactive"} 1`
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, _, metrics := send(ctx, t, "GET", s.RouterURLs[0]+"/metrics", "", nil)
		if strings.Contains(string(metrics), want) {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("router-worker metrics lack %s: the repeat went to the model again", want)
			break
		}
	}
	if c, err := two.Chat.Completions.New(ctx, params); err != nil || c.Choices[0].Message.Content != first.Choices[0].Message.Content {
		t.Errorf("a call on the other instance: %v %v", c, err)
	}
}

// TestOpenAISSEFraming reads a streamed completion as curl shows it: every
// event one "data: " line and a blank line, the last "data: [DONE]".
func TestOpenAISSEFraming(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	// A model slow enough that the answer comes in several chunks.
	s := apptest.StartStack(t, bin, apptest.StackOptions{ModelLatency: 300 * time.Millisecond})
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	waitModels(ctx, t, s.IngressURL)
	req, _ := http.NewRequestWithContext(ctx, "POST", s.IngressURL+"/v1/chat/completions", strings.NewReader(
		`{"model":"sim","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+apptest.DevKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("status %d, Content-Type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(lines) < 6 || len(lines)%2 != 0 {
		t.Fatalf("%d lines, want data/blank pairs: %q", len(lines), lines)
	}
	for i := 0; i < len(lines); i += 2 {
		if !strings.HasPrefix(lines[i], "data: ") || lines[i+1] != "" {
			t.Errorf("lines %d-%d: %q %q, want a data line and a blank line", i, i+1, lines[i], lines[i+1])
		}
	}
	n := len(lines)
	if deltas := n/2 - 4; deltas < 2 {
		t.Errorf("%d deltas, want several: %q", deltas, lines)
	}
	if lines[n-2] != "data: [DONE]" || !strings.Contains(lines[n-4], `"usage":{"prompt_tokens"`) ||
		!strings.Contains(lines[n-6], `"finish_reason":"stop"`) || !strings.Contains(lines[0], `"role":"assistant"`) {
		t.Errorf("events:\n%s", strings.Join(lines, "\n"))
	}
}
