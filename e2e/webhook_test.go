package e2e

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// TestWebhooksThroughTheStack: messages posted to ingress with a
// webhook_url are answered by router-worker and POSTed, signed, by one of
// two egress processes sharing the webhook group: each answer once, in
// conversation order, after the receiver's first refusal of each
// conversation was retried.
func TestWebhooksThroughTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	const secret = "e2e-webhook-secret-0123456789"
	const convs, per = 4, 5
	var mu sync.Mutex
	got := map[string][]string{} // conversation -> request IDs accepted, in order
	refused := map[string]bool{}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mac := hmac.New(sha256.New, []byte(secret))
		mac.Write([]byte(r.Header.Get("Switchboard-Timestamp") + "."))
		mac.Write(body)
		if want := "v1=" + hex.EncodeToString(mac.Sum(nil)); !hmac.Equal([]byte(want), []byte(r.Header.Get("Switchboard-Signature"))) {
			t.Errorf("bad signature on %s", body)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var res struct {
			RequestID      string `json:"request_id"`
			ConversationID string `json:"conversation_id"`
			Final          *struct {
				Content string `json:"content"`
			} `json:"final"`
		}
		if err := json.Unmarshal(body, &res); err != nil || res.Final == nil || res.Final.Content == "" {
			t.Errorf("body %s: %v, want a final result", body, err)
		}
		mu.Lock()
		defer mu.Unlock()
		calls++
		if !refused[res.ConversationID] {
			refused[res.ConversationID] = true
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		got[res.ConversationID] = append(got[res.ConversationID], res.RequestID)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	s := apptest.StartStack(t, bin, apptest.StackOptions{})
	t.Setenv("SWITCHBOARD_WEBHOOK_SECRET", secret)
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	for i := range 2 {
		port := apptest.FreePort(t)
		apptest.Start(t, fmt.Sprintf("egress-webhooks-%d", i+1), bin["egress"], "--addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--brokers", s.Brokers, "--webhooks", "--webhook-allow", "127.0.0.1", "--webhook-backoff", "50ms")
		if err := apptest.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", port), time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	sentBy := make([][]string, convs)
	var senders sync.WaitGroup
	for c := range convs {
		senders.Add(1)
		go func() {
			defer senders.Done()
			for i := range per {
				ack, err := postMessage(ctx, s.IngressURL, convID(c), fmt.Sprintf(`{"model":"sim","stream":%t,"max_tokens":16,"messages":[{"role":"user","content":"hook %d %d"}],"webhook_url":%q}`, i%2 == 0, c, i, srv.URL+"/hook"))
				if err != nil {
					t.Errorf("conversation %d message %d: %v", c, i, err)
					return
				}
				sentBy[c] = append(sentBy[c], ack.RequestID)
			}
		}()
	}
	senders.Wait()
	if t.Failed() {
		return
	}
	err := apptest.Wait(2*time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		for c := range convs {
			if n := len(got[convID(c)]); n < per {
				return fmt.Errorf("conversation %d: %d of %d answers delivered", c, n, per)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // a duplicate would arrive now
	mu.Lock()
	defer mu.Unlock()
	for c := range convs {
		if fmt.Sprint(got[convID(c)]) != fmt.Sprint(sentBy[c]) {
			t.Errorf("conversation %d: delivered %v, want %v (each once, in order)", c, got[convID(c)], sentBy[c])
		}
	}
	if calls != convs*per+convs {
		t.Errorf("%d webhook calls, want %d (every answer once, plus one refused call per conversation)", calls, convs*per+convs)
	}
}
