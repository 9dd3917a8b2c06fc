package tenant

import (
	"errors"
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
	}
	for name, in := range tests {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: Parse accepted %q", name, in)
		}
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
