package egress

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-llm/switchboard/internal/envelope"
)

// Authenticator maps an API key to its tenant. It is the contract between
// egress and whatever holds the keys (the tenants file below, or the
// key store ingress uses): it returns ErrUnauthorized (possibly wrapped)
// for a key it does not know, and must be safe for concurrent use.
type Authenticator interface {
	Authenticate(key string) (tenant string, err error)
}

// AuthFunc adapts a function to Authenticator.
type AuthFunc func(key string) (string, error)

// Authenticate calls f.
func (f AuthFunc) Authenticate(key string) (string, error) { return f(key) }

// ErrUnauthorized is returned for a missing or unknown API key.
var ErrUnauthorized = errors.New("unknown API key")

// Tenant is one tenant of a tenants file.
type Tenant struct {
	// Name is the tenant, as ingress writes it into every request.
	Name string `yaml:"name"`
	// APIKeys are the keys that act as this tenant.
	APIKeys []string `yaml:"api_keys"`
	// WebhookURL, when set, receives the terminal results of the tenant's
	// requests that name no webhook_url of their own.
	WebhookURL string `yaml:"webhook_url"`
	// WebhookSecret signs the tenant's webhook deliveries. Empty: the
	// egress's default secret.
	WebhookSecret string `yaml:"webhook_secret"`
}

// Tenants is a loaded tenants file: API keys to tenants, and each tenant's
// webhook endpoint. It implements Authenticator.
type Tenants struct {
	byKey  map[[32]byte]string
	byName map[string]*Tenant
}

type tenantsFile struct {
	Tenants []Tenant `yaml:"tenants"`
}

// LoadTenants reads a tenants file (YAML):
//
//	tenants:
//	  - name: acme
//	    api_keys: [sk-acme-1]
//	    webhook_url: https://hooks.acme.example/switchboard
//	    webhook_secret: a-long-random-string
func LoadTenants(path string) (*Tenants, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	return ParseTenants(data)
}

// ParseTenants parses the content of a tenants file (see LoadTenants).
func ParseTenants(data []byte) (*Tenants, error) {
	var f tenantsFile
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("tenants file: %w", err)
	}
	t := &Tenants{byKey: map[[32]byte]string{}, byName: map[string]*Tenant{}}
	for i := range f.Tenants {
		tn := &f.Tenants[i]
		switch {
		case tn.Name == "":
			return nil, fmt.Errorf("tenants file: tenant %d has no name", i)
		case t.byName[tn.Name] != nil:
			return nil, fmt.Errorf("tenants file: tenant %q appears twice", tn.Name)
		}
		if tn.WebhookURL != "" {
			if err := envelope.ValidWebhookURL(tn.WebhookURL); err != nil {
				return nil, fmt.Errorf("tenants file: tenant %q: webhook_url %w", tn.Name, err)
			}
		}
		t.byName[tn.Name] = tn
		for _, k := range tn.APIKeys {
			if len(k) < 16 {
				return nil, fmt.Errorf("tenants file: tenant %q: API keys must be at least 16 characters", tn.Name)
			}
			h := sha256.Sum256([]byte(k))
			if other, ok := t.byKey[h]; ok {
				return nil, fmt.Errorf("tenants file: an API key of %q is also one of %q", tn.Name, other)
			}
			t.byKey[h] = tn.Name
		}
	}
	return t, nil
}

// Authenticate returns the tenant of key. Keys are looked up by their
// SHA-256, so the lookup's timing says nothing about a key's prefix.
func (t *Tenants) Authenticate(key string) (string, error) {
	if name, ok := t.byKey[sha256.Sum256([]byte(key))]; ok && key != "" {
		return name, nil
	}
	return "", ErrUnauthorized
}

// Tenant returns the named tenant, or nil.
func (t *Tenants) Tenant(name string) *Tenant {
	if t == nil {
		return nil
	}
	return t.byName[name]
}

// bearer returns the API key of an Authorization header ("Bearer KEY").
func bearer(h string) string {
	if k, ok := strings.CutPrefix(h, "Bearer "); ok {
		return strings.TrimSpace(k)
	}
	return ""
}

// authHTTP authenticates an HTTP stream request: the key comes from the
// Authorization header or, for browsers' EventSource and WebSocket, which
// cannot set headers, from ?access_token=. It writes the 401 itself.
func (e *Egress) authHTTP(w http.ResponseWriter, r *http.Request) (tenant string, ok bool) {
	if e.cfg.Auth == nil {
		return "", true
	}
	key := bearer(r.Header.Get("Authorization"))
	if key == "" {
		key = r.URL.Query().Get("access_token")
	}
	tenant, err := e.cfg.Auth.Authenticate(key)
	if err != nil {
		e.metrics.authFailed.Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
		httpError(w, http.StatusUnauthorized, "unauthorized", "a valid API key is required (Authorization: Bearer KEY)")
		return "", false
	}
	return tenant, true
}
