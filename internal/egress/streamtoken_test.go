package egress

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// mintToken asks eg for a stream token with key; it returns the status and
// the token.
func mintToken(ctx context.Context, t *testing.T, eg *running, key, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, eg.url+"/v1/stream-tokens", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Token     string `json:"token"`
		ExpiresAt string `json:"expires_at"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.Token
}

// TestStreamTokens: a key mints a token for its tenant and some
// conversations; the token opens SSE (?token=) and WebSocket (subprotocol
// switchboard.token.TOKEN, echoed) streams of those conversations only,
// with the tenant's results only; forged, expired and other-conversation
// tokens and keys in URLs get 401; removing the key revokes its tokens.
func TestStreamTokens(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	entry := func(name, key string) string {
		return "  - name: " + name + "\n    key_sha256: [" + tenant.HashKey(key) + "]\n"
	}
	if err := os.WriteFile(path, []byte("tenants:\n"+entry("a", keyA)+entry("b", keyB)), 0o600); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	eg := h.start(func(c *Config) { c.TenantsFile, c.TenantsCheckInterval = path, 20*time.Millisecond })
	h.produce(
		res("tok", "a", "ra", "run", 1, 0, false), res("tok", "b", "rb", "run", 1, 0, true), res("tok", "a", "ra", "run", 1, 0, true),
		res("other", "a", "ro", "run", 1, 0, true),
	)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	for _, tc := range []struct{ name, key, body string }{
		{"no key", "", `{"conversation_ids":["tok"]}`},
		{"a wrong key", "sk-nobody-000000000000", `{"conversation_ids":["tok"]}`},
	} {
		if st, _ := mintToken(ctx, t, eg, tc.key, tc.body); st != http.StatusUnauthorized {
			t.Errorf("mint with %s: %d, want 401", tc.name, st)
		}
	}
	for _, body := range []string{`{}`, `{"conversation_ids":[".."]}`, `{"conversation_ids":["tok"],"ttl_seconds":7200}`, `{"conversation_ids":["tok"],"extra":1}`, `not json`} {
		if st, _ := mintToken(ctx, t, eg, keyA, body); st != http.StatusBadRequest {
			t.Errorf("mint with body %s: %d, want 400", body, st)
		}
	}
	st, tok := mintToken(ctx, t, eg, keyA, `{"conversation_ids":["tok","tok2"],"ttl_seconds":60}`)
	if st != http.StatusOK || !strings.HasPrefix(tok, streamTokenPrefix) {
		t.Fatalf("mint: %d %q", st, tok)
	}

	// SSE with ?token=: tenant a's results of conversation tok only.
	evs, st := readSSE(ctx, t, eg.url+"/v1/conversations/tok/events?request_id=ra&token="+tok, nil, 0)
	if want := []string{"chunk:ra/run/1/0", "result:done ra", "end:done"}; st != http.StatusOK || !slices.Equal(labels(evs), want) {
		t.Errorf("SSE with the token: %d %v, want %v", st, labels(evs), want)
	}
	// WebSocket with the token as subprotocol: the server echoes it.
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(eg.url, "http")+"/v1/conversations/tok/ws?request_id=ra",
		&websocket.DialOptions{Subprotocols: []string{tokenProtocolPrefix + tok}})
	if err != nil {
		t.Fatalf("WebSocket with the token: %v %v", resp, err)
	}
	if conn.Subprotocol() != tokenProtocolPrefix+tok {
		t.Errorf("WebSocket subprotocol %q, want the token's echoed", conn.Subprotocol())
	}
	_, msg, err := conn.Read(ctx)
	if err != nil || !strings.Contains(string(msg), `"chunk"`) {
		t.Errorf("WebSocket's first message: %s %v", msg, err)
	}
	conn.CloseNow()

	// Refused: other conversation, forged, expired, keys in the URL.
	expired := eg.e.tokens.seal(streamToken{tenant: "a", keyTag: tenant.KeyTag(keyA), expires: time.Now().Add(-time.Second), convs: []string{"tok"}})
	forged := tok[:len(tok)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(tok, "AA")]
	otherSecret, _ := newTokenCodec([]byte("another deployment"))
	foreign := otherSecret.seal(streamToken{tenant: "a", keyTag: tenant.KeyTag(keyA), expires: time.Now().Add(time.Hour), convs: []string{"tok"}})
	for name, url := range map[string]string{
		"other conversation": "/v1/conversations/other/events?token=" + tok,
		"expired":            "/v1/conversations/tok/events?token=" + expired,
		"forged":             "/v1/conversations/tok/events?token=" + forged,
		"another secret":     "/v1/conversations/tok/events?token=" + foreign,
		"a key as token":     "/v1/conversations/tok/events?token=" + keyA,
		"a key in the URL":   "/v1/conversations/tok/events?access_token=" + keyA,
	} {
		if _, st := readSSE(ctx, t, eg.url+url, nil, 0); st != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", name, st)
		}
	}

	// An open token stream ends when its key is removed; new ones are refused.
	open := make(chan []got, 1)
	go func() {
		evs, _ := readSSE(ctx, t, eg.url+"/v1/conversations/tok2/events?token="+tok, nil, 0)
		open <- evs
	}()
	waitFor(ctx, t, "the token's stream", func() bool { return eg.metric(t, "switchboard_egress_subscribers", "transport", "sse") == 1 })
	if err := os.WriteFile(path, []byte("tenants:\n"+entry("b", keyB)), 0o600); err != nil {
		t.Fatal(err)
	}
	select {
	case evs := <-open:
		if l := labels(evs); len(l) == 0 || l[len(l)-1] != "end:revoked" {
			t.Errorf("the token's stream after its key was removed: %v, want end:revoked", l)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the token's stream still open 5s after its key was removed")
	}
	if _, st := readSSE(ctx, t, eg.url+"/v1/conversations/tok/events?token="+tok, nil, 0); st != http.StatusUnauthorized {
		t.Errorf("the token after its key was removed: %d, want 401", st)
	}
}
