package tenant

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthenticate(t *testing.T) {
	s, err := Parse([]byte(`
tenants:
  - name: a
    key_sha256: [` + HashKey("key-a") + `, ` + strings.ToUpper(HashKey("key-a2")) + `]
    models: [sim]
    lanes: [batch]
  - name: b
    key_sha256: [` + HashKey("key-b") + `]
    requests_per_second: 2.5
`))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		token, want string
		err         error
	}{
		{"key-a", "a", nil},
		{"key-a2", "a", nil},
		{"key-b", "b", nil},
		{"", "", ErrNoKey},
		{"key-c", "", ErrUnknownKey},
		{HashKey("key-a"), "", ErrUnknownKey}, // the digest itself is not a key
	}
	for _, tt := range tests {
		got, err := s.Authenticate(tt.token)
		if !errors.Is(err, tt.err) || (err == nil && got.Name != tt.want) {
			t.Errorf("Authenticate(%q) = %v, %v; want %q, %v", tt.token, got, err, tt.want, tt.err)
		}
	}
	a, _ := s.Authenticate("key-a")
	if !a.AllowsModel("sim") || a.AllowsModel("gpt") || !a.AllowsLane("batch") || a.AllowsLane("interactive") {
		t.Errorf("tenant a's permissions are wrong: %+v", a)
	}
	b, _ := s.Authenticate("key-b")
	if !b.AllowsModel("anything") || !b.AllowsLane("interactive") || b.RequestBurst != 2 || b.TokenBurst != 1 {
		t.Errorf("tenant b = %+v, want every model and lane, request burst 2, token burst 1", b)
	}
}

func TestParseRejects(t *testing.T) {
	h := HashKey("k")
	tests := map[string]string{
		"empty":         ``,
		"no name":       "tenants:\n  - key_sha256: [" + h + "]\n",
		"no key":        "tenants:\n  - name: a\n",
		"short digest":  "tenants:\n  - name: a\n    key_sha256: [abc]\n",
		"unknown field": "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    keys: [x]\n",
		"dup name":      "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n  - name: a\n    key_sha256: [" + HashKey("j") + "]\n",
		"dup key":       "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n  - name: b\n    key_sha256: [" + h + "]\n",
		"negative rate": "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    requests_per_second: -1\n",
		"webhook ftp":   "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    webhook_url: ftp://x/y\n",
		"webhook rel":   "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    webhook_url: /hook\n",
		"webhook user":  "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    webhook_url: https://u:p@h.example/x\n",
		"secret unset":  "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    webhook_secret_env: UNSET\n",
		"secret empty":  "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    webhook_secret_env: EMPTY\n",
		"secret inline": "tenants:\n  - name: a\n    key_sha256: [" + h + "]\n    webhook_secret: s3cret\n",
		"plain keys":    "tenants:\n  - name: a\n    api_keys: [sk-0123456789abcdef]\n",
	}
	getenv := func(name string) string {
		if name == "SET" {
			return "a-secret"
		}
		return ""
	}
	for name, in := range tests {
		if _, err := ParseEnv([]byte(in), getenv); err == nil {
			t.Errorf("%s: Parse accepted %q", name, in)
		}
	}
}

// TestWebhooks: a tenant's webhook endpoint is kept and its secret is read
// from the variable it names, through the getenv given.
func TestWebhooks(t *testing.T) {
	var asked []string
	getenv := func(name string) string {
		asked = append(asked, name)
		return map[string]string{"ACME_HOOK_SECRET": "acme-secret"}[name]
	}
	s, err := ParseEnv([]byte(`
tenants:
  - name: acme
    key_sha256: [`+HashKey("key-acme")+`]
    webhook_url: https://hooks.acme.example/switchboard
    webhook_secret_env: ACME_HOOK_SECRET
  - name: plain
    key_sha256: [`+HashKey("key-plain")+`]
`), getenv)
	if err != nil {
		t.Fatal(err)
	}
	acme := s.Tenant("acme")
	if acme == nil || acme.WebhookURL != "https://hooks.acme.example/switchboard" || string(acme.WebhookSecret) != "acme-secret" {
		t.Errorf("acme = %v, want its webhook URL and secret", acme)
	}
	if a, _ := s.Authenticate("key-acme"); a != acme {
		t.Errorf("key-acme authenticates as %v, not the Tenant(\"acme\") %v", a, acme)
	}
	if p := s.Tenant("plain"); p == nil || p.WebhookURL != "" || p.WebhookSecret != nil {
		t.Errorf("plain = %v, want no webhook", p)
	}
	if s.Tenant("nobody") != nil {
		t.Error("Tenant of an unknown name is not nil")
	}
	if (*Set)(nil).Tenant("acme") != nil {
		t.Error("a nil Set has a tenant")
	}
	if got := fmt.Sprintf("%v %+v %#v %s", acme, acme, acme, acme.WebhookSecret); strings.Contains(got, "acme-secret") || !strings.Contains(got, "[redacted]") {
		t.Errorf("printing a tenant shows its secret: %s", got)
	}
	if len(asked) != 1 || asked[0] != "ACME_HOOK_SECRET" {
		t.Errorf("getenv asked for %v, want only ACME_HOOK_SECRET", asked)
	}
}

// TestSecretsNotRead: with a nil getenv (ingress, egress without
// webhooks) secret variables are neither read nor required.
func TestSecretsNotRead(t *testing.T) {
	s, err := ParseEnv([]byte("tenants:\n  - name: a\n    key_sha256: ["+HashKey("k")+"]\n    webhook_url: https://h.example/x\n    webhook_secret_env: UNSET_ANYWHERE\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Tenant("a"); a.WebhookSecret != nil || a.WebhookURL != "https://h.example/x" {
		t.Errorf("tenant a = %+v, want its URL and no secret", a)
	}
	if _, err := ParseEnv([]byte("tenants:\n  - name: a\n    key_sha256: ["+HashKey("k")+"]\n    webhook_url: ftp://x\n"), nil); err == nil {
		t.Error("an invalid webhook_url loaded without getenv")
	}
}

func TestBearerToken(t *testing.T) {
	tests := map[string]string{
		"Bearer abc":   "abc",
		"bearer  abc ": "abc",
		"Basic abc":    "",
		"abc":          "",
		"":             "",
		"Bearer":       "",
	}
	for in, want := range tests {
		if got := BearerToken(in); got != want {
			t.Errorf("BearerToken(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRepoTenantsFile keeps the development tenants file loadable and its
// documented key working.
func TestRepoTenantsFile(t *testing.T) {
	s, err := Load(filepath.Join("..", "..", "tenants.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Authenticate("sk-switchboard-dev"); err != nil {
		t.Errorf("the development key: %v", err)
	}
}

// TestWebhookAllow: a tenant's webhook targets are its webhook_allow, its
// own webhook_url and the file's top-level list; a malformed entry is a
// load error.
func TestWebhookAllow(t *testing.T) {
	s, err := Parse([]byte(`
webhook_allow: ["https://common.example/in/"]
tenants:
  - name: a
    key_sha256: [` + HashKey("ka") + `]
    webhook_url: http://127.0.0.1:9000/a/hook
  - name: b
    key_sha256: [` + HashKey("kb") + `]
    webhook_allow: ["https://b.example"]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		tenant, url string
		ok          bool
	}{
		{"a", "http://127.0.0.1:9000/a/hook", true},
		{"a", "http://127.0.0.1:9000/a/other", false},
		{"a", "https://common.example/in/x", true},
		{"a", "https://b.example/", false},
		{"b", "https://b.example/x", true},
		{"b", "http://127.0.0.1:9000/a/hook", false},
		{"unknown", "https://common.example/in/x", true},
		{"unknown", "https://b.example/", false},
	} {
		if err := s.WebhookAllow(tc.tenant).CheckString(tc.url); (err == nil) != tc.ok {
			t.Errorf("tenant %s, %s: %v, want ok=%v", tc.tenant, tc.url, err, tc.ok)
		}
	}
	if _, err := Parse([]byte("tenants:\n  - name: a\n    key_sha256: [" + HashKey("ka") + "]\n    webhook_allow: [\"ftp://x\"]\n")); err == nil {
		t.Error("a malformed webhook_allow entry loaded")
	}
}
