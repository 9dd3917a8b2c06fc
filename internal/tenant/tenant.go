// Package tenant maps API keys to tenants. Ingress uses it to authenticate
// every request and to find the tenant's allowed models, lanes and rate
// limits; egress can use the same file to authorise readers.
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
//
// HashKey gives the digest of a key: `printf %s KEY | sha256sum` does the same.
package tenant

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
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
}

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
	byHash  map[[sha256.Size]byte]*Tenant
	tenants []*Tenant
}

// Errors of Authenticate; callers answer both with 401.
var (
	ErrNoKey      = errors.New("no API key")
	ErrUnknownKey = errors.New("unknown API key")
)

type file struct {
	Tenants []*Tenant `yaml:"tenants"`
}

// Load reads and validates a tenants file.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenants: %w", err)
	}
	s, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("tenants: %s: %w", path, err)
	}
	return s, nil
}

// Parse reads a tenants file's content strictly: unknown fields, duplicate
// names or keys and malformed digests are errors.
func Parse(b []byte) (*Set, error) {
	var f file
	dec := yaml.NewDecoder(strings.NewReader(string(b)))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if len(f.Tenants) == 0 {
		return nil, errors.New("no tenants")
	}
	s := &Set{byHash: map[[sha256.Size]byte]*Tenant{}}
	names := map[string]bool{}
	for i, t := range f.Tenants {
		if t == nil || t.Name == "" {
			return nil, fmt.Errorf("tenants[%d]: name is required", i)
		}
		if names[t.Name] {
			return nil, fmt.Errorf("tenant %q: duplicate name", t.Name)
		}
		names[t.Name] = true
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

// Tenants returns the tenants in file order.
func (s *Set) Tenants() []*Tenant { return slices.Clone(s.tenants) }
