package ingress

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// TestWebhookAllowlist: a request's webhook_url must be on its tenant's
// allowlist (the tenant's, the tenants file's, or --webhook-allow),
// matching scheme, host, port and path prefix; internal addresses and
// other tenants' paths are refused with 400 webhook_not_allowed, before
// anything is produced.
func TestWebhookAllowlist(t *testing.T) {
	tenants, err := tenant.Parse([]byte(`
webhook_allow: ["https://hooks.example.com/common/"]
tenants:
  - name: dev
    key_sha256: [` + tenant.HashKey(devKey) + `]
    webhook_allow: ["http://127.0.0.1:9000/dev"]
  - name: limited
    key_sha256: [` + tenant.HashKey(limitedKey) + `]
    webhook_url: https://hooks.example.com/limited/in
`))
	if err != nil {
		t.Fatal(err)
	}
	in := newIngress(t, newCluster(t), func(c *Config) {
		c.Tenants = tenants
		c.WebhookAllow = []string{"https://*.partner.example/hooks/"}
	})
	for _, tc := range []struct {
		key, url string
		ok       bool
	}{
		{devKey, "http://127.0.0.1:9000/dev", true},
		{devKey, "http://127.0.0.1:9000/dev/x?y=1", true},
		{devKey, "https://hooks.example.com/common/a", true}, // the file's list
		{devKey, "https://a.partner.example/hooks/x", true},  // --webhook-allow
		{devKey, "http://127.0.0.1:9001/dev", false},         // another port of the host
		{devKey, "http://127.0.0.1:9000/metrics", false},     // another path
		{devKey, "http://127.0.0.1:9000/dev/../metrics", false},
		{devKey, "http://localhost:9000/dev", false},
		{devKey, "http://169.254.169.254/latest/meta-data/", false},
		{devKey, "https://hooks.example.com/limited/in", false}, // another tenant's endpoint
		{devKey, "https://hooks.example.com/commonx", false},
		{limitedKey, "https://hooks.example.com/limited/in", true}, // its own webhook_url
		{limitedKey, "http://127.0.0.1:9000/dev", false},           // dev's list is not limited's
	} {
		body := fmt.Sprintf(`{"model":"sim","lane":"batch","messages":[{"role":"user","content":"hi"}],"webhook_url":%q}`, tc.url)
		res, b := doWith(t, in.Handler(), "POST", "/v1/conversations/c/messages", "application/json", body,
			map[string]string{"Authorization": "Bearer " + tc.key})
		switch {
		case tc.ok && res.StatusCode != http.StatusAccepted:
			t.Errorf("%s: %d %s, want 202", tc.url, res.StatusCode, b)
		case !tc.ok && (res.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), `"webhook_not_allowed"`) ||
			!strings.Contains(string(b), `"field":"webhook_url"`)):
			t.Errorf("%s: %d %s, want 400 webhook_not_allowed on webhook_url", tc.url, res.StatusCode, b)
		}
	}
}
