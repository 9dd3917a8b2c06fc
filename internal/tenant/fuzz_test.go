package tenant

import (
	"strings"
	"testing"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// FuzzParse: no tenants file crashes the loader; what loads is consistent:
// every digest and name finds its tenant, bursts are at least 1, webhook
// URLs are valid and a named secret variable was resolved.
func FuzzParse(f *testing.F) {
	h := HashKey("k")
	f.Add([]byte("tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    webhook_url: https://h.example/x\n    webhook_secret_env: SET_A\n"))
	f.Add([]byte("tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    models: [sim]\n    lanes: [batch]\n    requests_per_second: 1.5\n"))
	f.Add([]byte("tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    webhook_secret_env: NOPE\n"))
	f.Add([]byte("tenants: []\n"))
	f.Add([]byte("tenants:\n  - name: a\n  - name: a\n"))
	f.Add([]byte("{"))
	getenv := func(name string) string {
		if v, ok := strings.CutPrefix(name, "SET_"); ok {
			return "secret-" + v
		}
		return ""
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseEnv(data, getenv)
		if err != nil {
			return
		}
		if len(s.Tenants()) == 0 {
			t.Fatal("a set without tenants loaded")
		}
		for d, tn := range s.byHash {
			if s.Tenant(tn.Name) != tn {
				t.Fatalf("digest %x: tenant %q is not Tenant(%q)", d, tn.Name, tn.Name)
			}
		}
		for _, tn := range s.Tenants() {
			if s.Tenant(tn.Name) != tn || len(tn.KeySHA256) == 0 || tn.RequestBurst < 1 || tn.TokenBurst < 1 {
				t.Fatalf("inconsistent tenant %+v", tn)
			}
			if tn.WebhookURL != "" && envelope.ValidWebhookURL(tn.WebhookURL) != nil {
				t.Fatalf("tenant %q: invalid webhook_url %q loaded", tn.Name, tn.WebhookURL)
			}
			if tn.WebhookSecretEnv != "" && string(tn.WebhookSecret) != getenv(tn.WebhookSecretEnv) {
				t.Fatalf("tenant %q: secret %q, want the value of %s", tn.Name, tn.WebhookSecret, tn.WebhookSecretEnv)
			}
			if tn.WebhookSecretEnv == "" && tn.WebhookSecret != nil {
				t.Fatalf("tenant %q has a secret but names no variable", tn.Name)
			}
		}
		if _, err := s.Authenticate(""); err == nil {
			t.Fatal("the empty key authenticated")
		}
	})
}
