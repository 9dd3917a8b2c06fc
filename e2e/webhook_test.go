package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// TestWebhooksThroughTheStack: messages posted to ingress with a
// webhook_url are answered by router-worker and POSTed, signed, by one of
// two egress processes sharing the webhook group: each answer once, in
// conversation order, after the receiver's first refusal of each
// conversation was retried. A message without a webhook_url goes to its
// tenant's webhook_url from the tenants file (the one ingress uses, plus
// the webhook). The tenant's secret (webhook_secret_env) signs all its
// deliveries, not egress's default.
func TestWebhooksThroughTheStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	const secret, tenantSecret = "e2e-webhook-secret-0123456789", "e2e-tenant-secret-0123456789"
	const convs, per = 4, 5
	var mu sync.Mutex
	got := map[string][]string{} // conversation -> request IDs accepted, in order
	refused := map[string]bool{}
	calls := 0
	var tenantGot []string // request IDs delivered to the tenant's endpoint
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		// Every delivery is the dev tenant's, signed with its own secret,
		// in the Standard Webhooks form its reference library verifies.
		wh, err := standardwebhooks.NewWebhookRaw([]byte(tenantSecret))
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		if err != nil {
			t.Errorf("bad signature on %s: %v", body, err)
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
		if r.URL.Path == "/tenant" {
			tenantGot = append(tenantGot, res.RequestID)
			w.WriteHeader(http.StatusNoContent)
			return
		}
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

	// Ingress refuses webhook_urls off the allowlist: it gets the same
	// entry as egress, the receiver's one port.
	s := apptest.StartStack(t, bin, apptest.StackOptions{IngressArgs: []string{"--webhook-allow", srv.URL + "/hook"}})
	t.Setenv("SWITCHBOARD_WEBHOOK_SECRET", secret)
	t.Setenv("E2E_TENANT_WEBHOOK_SECRET", tenantSecret)
	tenants := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(tenants, fmt.Appendf(nil, "tenants:\n  - name: dev\n    key_sha256: [%s]\n    webhook_url: %s/tenant\n    webhook_secret_env: E2E_TENANT_WEBHOOK_SECRET\n",
		tenant.HashKey(apptest.DevKey), srv.URL), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	for i := range 2 {
		port, adminPort := apptest.FreePort(t), apptest.FreePort(t)
		apptest.Start(t, fmt.Sprintf("egress-webhooks-%d", i+1), bin["egress"], "--addr", fmt.Sprintf("127.0.0.1:%d", port),
			"--admin-addr", fmt.Sprintf("127.0.0.1:%d", adminPort), "--brokers", s.Brokers, "--tenants", tenants, "--webhooks", "--webhook-allow", srv.URL+"/hook", "--webhook-backoff", "50ms")
		if err := apptest.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", adminPort), time.Minute); err != nil {
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
	tenantAck, err := postMessage(ctx, s.IngressURL, "tenant-hook", `{"model":"sim","max_tokens":16,"messages":[{"role":"user","content":"to the tenant's webhook"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if t.Failed() {
		return
	}
	err = apptest.Wait(2*time.Minute, func() error {
		mu.Lock()
		defer mu.Unlock()
		if len(tenantGot) == 0 {
			return errors.New("nothing delivered to the tenant's webhook")
		}
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
	if fmt.Sprint(tenantGot) != fmt.Sprint([]string{tenantAck.RequestID}) {
		t.Errorf("tenant's webhook got %v, want [%s]", tenantGot, tenantAck.RequestID)
	}
	if calls != convs*per+convs {
		t.Errorf("%d webhook calls, want %d (every answer once, plus one refused call per conversation)", calls, convs*per+convs)
	}
}
