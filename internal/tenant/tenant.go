// Package tenant maps API keys to tenants. Ingress and egress read the same
// tenants file: ingress authenticates every request with it and finds the
// tenant's allowed models, lanes and rate limits; egress authenticates every
// stream (a tenant sees only its own conversations) and finds the tenant's
// webhook endpoint and signing secret.
//
// A tenants file never holds keys, only their SHA-256 digests (hex), so it
// can be kept in version control and read by every service:
//
//	tenants:
//	  - name: dev
//	    key_sha256: [0b9c2625...]     # sha256 of the raw key, lowercase hex
//	    models: [sim]                 # empty: every model
//	    lanes: [interactive, batch]   # empty: every lane
//	    requests_per_second: 100      # 0: unlimited
//	    request_burst: 200            # default: requests_per_second, at least 1
//	    tokens_per_second: 50000      # estimated tokens; 0: unlimited
//	    token_burst: 100000           # default: tokens_per_second, at least 1
//	    webhook_url: https://hooks.example.com/switchboard  # egress: default webhook of the tenant's results
//	    webhook_secret_env: DEV_WEBHOOK_SECRET              # egress: env variable holding the tenant's signing secret
//	    show: [backend, timings, kafka_positions]           # what clients see beyond answers; default none
//	    webhook_allow: [https://hooks.example.com/dev/]     # webhook targets this tenant's requests may name
//	    memory: true                  # conversations with memory by default (ingress)
//	webhook_allow: [https://hooks.example.com/common/]      # webhook targets every tenant's requests may name
//
// A tenant's webhook targets are those its webhook_allow, the file's
// top-level webhook_allow or the services' --webhook-allow allow (see
// package allowlist for the entries); its own webhook_url is always on its
// list. Ingress refuses a request naming another target, and egress
// checks every delivery again.
//
// HashKey gives the digest of a key: `printf %s KEY | sha256sum` does the same.
// Secrets are not in the file either: webhook_secret_env names an
// environment variable, read when the file is loaded by a service that
// delivers webhooks (egress with --webhooks); naming one that is unset or
// empty is then a load error. Other services load with a nil getenv and
// never see the secrets.
package tenant

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/webhook/allowlist"
)

// Tenant is one API client: who it is and what it may do.
type Tenant struct {
	// Name identifies the tenant in records (Request.tenant), logs and metrics.
	Name string `yaml:"name"`
	// KeySHA256 are the lowercase hex SHA-256 digests of the tenant's keys.
	KeySHA256 []string `yaml:"key_sha256"`
	// Models the tenant may call; empty means every model.
	Models []string `yaml:"models"`
	// Lanes the tenant may use; empty means every lane.
	Lanes []string `yaml:"lanes"`
	// RequestsPerSecond refills the tenant's request bucket; 0 is unlimited.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// RequestBurst is the request bucket's size.
	RequestBurst int `yaml:"request_burst"`
	// TokensPerSecond refills the tenant's bucket of estimated tokens; 0 is
	// unlimited.
	TokensPerSecond float64 `yaml:"tokens_per_second"`
	// TokenBurst is the token bucket's size, and so the largest request
	// (in estimated tokens) the tenant can send.
	TokenBurst int `yaml:"token_burst"`
	// WebhookURL, when set, is where egress POSTs the terminal results of
	// the tenant's requests that name no webhook_url of their own.
	WebhookURL string `yaml:"webhook_url"`
	// WebhookSecretEnv names the environment variable holding the secret
	// that signs the tenant's webhook deliveries (whsec_ and base64, or a
	// plain string of at least 16 bytes). Empty: a key derived from
	// egress's global secret (SWITCHBOARD_WEBHOOK_SECRET) and the
	// tenant's name (see package webhook).
	WebhookSecretEnv string `yaml:"webhook_secret_env"`
	// WebhookSecret is the value of WebhookSecretEnv, read at load time.
	WebhookSecret Secret `yaml:"-"`
	// Show lists what the tenant's clients see beyond their answers:
	// backend, timings, kafka_positions (see Shows). Default: none.
	Show []string `yaml:"show"`
	// WebhookAllow lists webhook targets this tenant's requests may name,
	// besides the file's and the services' lists (see package allowlist).
	WebhookAllow []string `yaml:"webhook_allow"`
	// Memory turns conversations with memory on for the tenant's requests
	// (README, "Conversations with memory") unless a request says
	// otherwise; the OpenAI-compatible API, whose clients send whole
	// histories, needs the X-Switchboard-Memory header either way.
	Memory bool `yaml:"memory"`
	// allow is WebhookAllow, the file's list and WebhookURL, parsed.
	allow *allowlist.List
}

// Secret is a secret's bytes; it prints as [redacted], so logging or
// printing a Tenant does not leak it.
type Secret []byte

// String returns "[redacted]".
func (Secret) String() string { return "[redacted]" }

// GoString returns "[redacted]" (for %#v).
func (Secret) GoString() string { return "[redacted]" }

// AllowsModel reports whether t may call model.
func (t *Tenant) AllowsModel(model string) bool {
	return len(t.Models) == 0 || slices.Contains(t.Models, model)
}

// AllowsLane reports whether t may send work on lane.
func (t *Tenant) AllowsLane(lane string) bool {
	return len(t.Lanes) == 0 || slices.Contains(t.Lanes, lane)
}

// Set is a loaded tenants file. It is immutable and safe for concurrent use.
type Set struct {
	allow   *allowlist.List // the file's top-level webhook_allow
	byHash  map[[sha256.Size]byte]*Tenant
	byName  map[string]*Tenant
	tenants []*Tenant
}

// Errors of Authenticate; callers answer both with 401.
var (
	ErrNoKey      = errors.New("no API key")
	ErrUnknownKey = errors.New("unknown API key")
)

type file struct {
	Tenants      []*Tenant `yaml:"tenants"`
	WebhookAllow []string  `yaml:"webhook_allow"`
}

// Load reads and validates a tenants file, taking webhook secrets from the
// process environment.
func Load(path string) (*Set, error) { return LoadEnv(path, os.Getenv) }

// LoadEnv is Load with getenv in place of os.Getenv. A nil getenv reads
// no secrets at all: a service that sends no webhooks (ingress; egress
// without --webhooks) need not hold them, and WebhookSecret stays nil.
func LoadEnv(path string, getenv func(string) string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	s, err := ParseEnv(b, getenv)
	if err != nil {
		return nil, fmt.Errorf("tenants: %s: %w", path, err)
	}
	return s, nil
}

// Parse reads a tenants file's content strictly: unknown fields, duplicate
// names or keys, malformed digests, invalid webhook URLs and secret
// variables that are unset are errors. Webhook secrets come from the
// process environment.
func Parse(b []byte) (*Set, error) { return ParseEnv(b, os.Getenv) }

// ParseEnv is Parse with getenv in place of os.Getenv; nil reads no
// secrets (see LoadEnv).
func ParseEnv(b []byte, getenv func(string) string) (*Set, error) {
	var f file
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(f.Tenants) == 0 {
		return nil, errors.New("no tenants")
	}
	s := &Set{byHash: map[[sha256.Size]byte]*Tenant{}, byName: map[string]*Tenant{}}
	var err error
	if s.allow, err = allowlist.Parse(f.WebhookAllow); err != nil {
		return nil, err
	}
	for i, t := range f.Tenants {
		if t == nil || t.Name == "" {
			return nil, fmt.Errorf("tenants[%d]: name is required", i)
		}
		if s.byName[t.Name] != nil {
			return nil, fmt.Errorf("tenant %q: duplicate name", t.Name)
		}
		s.byName[t.Name] = t
		if len(t.KeySHA256) == 0 {
			return nil, fmt.Errorf("tenant %q: key_sha256 needs at least one digest", t.Name)
		}
		for _, h := range t.KeySHA256 {
			d, err := hex.DecodeString(strings.ToLower(h))
			if err != nil || len(d) != sha256.Size {
				return nil, fmt.Errorf("tenant %q: key_sha256 %q is not 64 hex digits", t.Name, h)
			}
			var k [sha256.Size]byte
			copy(k[:], d)
			if other, dup := s.byHash[k]; dup {
				return nil, fmt.Errorf("tenant %q: a key is also %q's", t.Name, other.Name)
			}
			s.byHash[k] = t
		}
		if t.RequestsPerSecond < 0 || t.TokensPerSecond < 0 || t.RequestBurst < 0 || t.TokenBurst < 0 {
			return nil, fmt.Errorf("tenant %q: rates and bursts must not be negative", t.Name)
		}
		if t.RequestBurst == 0 {
			t.RequestBurst = max(1, int(t.RequestsPerSecond))
		}
		if t.TokenBurst == 0 {
			t.TokenBurst = max(1, int(t.TokensPerSecond))
		}
		if err := t.checkShow(); err != nil {
			return nil, err
		}
		entries := t.WebhookAllow
		if t.WebhookURL != "" {
			if err := envelope.ValidWebhookURL(t.WebhookURL); err != nil {
				return nil, fmt.Errorf("tenant %q: webhook_url %w", t.Name, err)
			}
			entries = append(slices.Clone(entries), ownEntry(t.WebhookURL))
		}
		own, err := allowlist.Parse(entries)
		if err != nil {
			return nil, fmt.Errorf("tenant %q: %w", t.Name, err)
		}
		t.allow = allowlist.Union(s.allow, own)
		if t.WebhookSecretEnv != "" && getenv != nil {
			v := getenv(t.WebhookSecretEnv)
			if v == "" {
				return nil, fmt.Errorf("tenant %q: webhook_secret_env: environment variable %s is unset or empty", t.Name, t.WebhookSecretEnv)
			}
			t.WebhookSecret = Secret(v)
		}
		s.tenants = append(s.tenants, t)
	}
	return s, nil
}

// HashKey returns the lowercase hex SHA-256 digest of key, as a tenants
// file holds it.
func HashKey(key string) string {
	d := sha256.Sum256([]byte(key))
	return hex.EncodeToString(d[:])
}

// Authenticate returns the tenant whose key is token. Only the token's
// digest is compared, so lookup time says nothing about stored keys.
func (s *Set) Authenticate(token string) (*Tenant, error) {
	if token == "" {
		return nil, ErrNoKey
	}
	t, ok := s.byHash[sha256.Sum256([]byte(token))]
	if !ok {
		return nil, ErrUnknownKey
	}
	return t, nil
}

// BearerToken returns the token of an "Authorization: Bearer TOKEN" header
// value, or "" when it has another form.
func BearerToken(header string) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// Tenant returns the tenant called name, or nil (also for a nil Set).
func (s *Set) Tenant(name string) *Tenant {
	if s == nil {
		return nil
	}
	return s.byName[name]
}

// ownEntry turns a tenant's webhook_url into the allowlist entry that
// allows it: its scheme, host, port and path.
func ownEntry(raw string) string {
	u, _ := url.Parse(raw) // valid: checked by ValidWebhookURL
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	return u.Scheme + "://" + u.Host + path
}

// WebhookAllow returns the webhook targets the file allows tenant name:
// its own webhook_allow and webhook_url, and the file's top-level
// webhook_allow (only that for a tenant not in the file; nil for a nil
// Set). The services add their --webhook-allow.
func (s *Set) WebhookAllow(name string) *allowlist.List {
	if s == nil {
		return nil
	}
	if t := s.byName[name]; t != nil {
		return t.allow
	}
	return s.allow
}

// Tenants returns the tenants in file order.
func (s *Set) Tenants() []*Tenant { return slices.Clone(s.tenants) }

// KeyTag is a short tag of an API key: the first 8 bytes of its SHA-256
// digest. A stream token carries it, so that the token stops working when
// its key is removed from the file (HasKeyTag).
func KeyTag(key string) [8]byte {
	d := sha256.Sum256([]byte(key))
	return [8]byte(d[:8])
}

// HasKeyTag reports whether tenant name still has a key with tag (false
// for a nil Set or an unknown tenant).
func (s *Set) HasKeyTag(name string, tag [8]byte) bool {
	t := s.Tenant(name)
	if t == nil {
		return false
	}
	want := hex.EncodeToString(tag[:])
	for _, d := range t.KeySHA256 {
		if strings.HasPrefix(strings.ToLower(d), want) {
			return true
		}
	}
	return false
}
