package router

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-llm/switchboard/internal/llm"
)

// Defaults of the backends file.
const (
	DefaultWeight             = 1
	DefaultMaxConcurrency     = 64
	DefaultTimeout            = 60 * time.Second
	DefaultConnectTimeout     = 5 * time.Second
	DefaultBreakerFailures    = 5
	DefaultBreakerOpenFor     = 2 * time.Second
	DefaultBreakerProbes      = 1
	DefaultCompletionEstimate = 256
)

// Routing is the content of the backends file (see backends.yaml and
// docs/BACKENDS.md): the model servers, model aliases and fallback chains,
// per-tenant limits and the circuit breakers' settings. It can be reloaded
// while the router runs.
type Routing struct {
	// Backends are the model servers. At least one is required.
	Backends []Backend `yaml:"backends"`
	// Aliases map a requested model name to a served one ("fast": "sim").
	Aliases map[string]string `yaml:"aliases"`
	// Fallbacks map a served model to the models tried, in order, when its
	// whole pool is unavailable (every backend's breaker open). Chains are
	// not followed transitively.
	Fallbacks map[string][]string `yaml:"fallbacks"`
	// Tenants limits each tenant's requests and tokens.
	Tenants Tenants `yaml:"tenants"`
	// Breaker configures every backend's circuit breaker.
	Breaker Breaker `yaml:"breaker"`
}

// Backend is one OpenAI-compatible model server.
type Backend struct {
	// Name identifies the backend in results, logs and metrics.
	Name string `yaml:"name"`
	// BaseURL is the API root, e.g. http://127.0.0.1:8090/v1.
	BaseURL string `yaml:"base_url"`
	// APIKeyEnv names the environment variable holding the API key; empty
	// means no key is sent. A named variable that is unset or empty is an
	// error.
	APIKeyEnv string `yaml:"api_key_env"`
	// APIKey is read from APIKeyEnv when the file is loaded.
	APIKey string `yaml:"-"`
	// Models are the model names this backend serves.
	Models []string `yaml:"models"`
	// Weight is the backend's share among the backends of a model (smooth
	// weighted round-robin). Default 1.
	Weight int `yaml:"weight"`
	// MaxConcurrency bounds the calls in flight to the backend (and its
	// connection pool). Default 64.
	MaxConcurrency int `yaml:"max_concurrency"`
	// RequestsPerMinute and TokensPerMinute limit the backend's use; zero
	// is unlimited. Tokens are estimated before a call and reconciled with
	// the usage the backend reports.
	RequestsPerMinute int `yaml:"requests_per_minute"`
	TokensPerMinute   int `yaml:"tokens_per_minute"`
	// ConnectTimeout bounds dialing and the TLS handshake. Default 5s.
	ConnectTimeout time.Duration `yaml:"connect_timeout"`
	// FirstTokenTimeout bounds the wait for a stream's first token.
	// Default: Timeout.
	FirstTokenTimeout time.Duration `yaml:"first_token_timeout"`
	// Timeout bounds one call, streaming included. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
}

// Limit is a rate limit per minute; zero fields are unlimited.
type Limit struct {
	RequestsPerMinute int `yaml:"requests_per_minute"`
	TokensPerMinute   int `yaml:"tokens_per_minute"`
}

// Tenants configures per-tenant limits.
type Tenants struct {
	// Default applies to every tenant without an override.
	Default Limit `yaml:"default"`
	// Overrides are limits for named tenants.
	Overrides map[string]Limit `yaml:"overrides"`
}

// limit returns the limit of tenant.
func (t Tenants) limit(tenant string) Limit {
	if l, ok := t.Overrides[tenant]; ok {
		return l
	}
	return t.Default
}

// Breaker configures the endpoint circuit breakers (see breaker.go).
type Breaker struct {
	// Failures is how many consecutive failed calls open a backend's
	// breaker. Default 5.
	Failures int `yaml:"failures"`
	// OpenFor is how long an open breaker rejects calls before it lets
	// probes through (half-open). Default 10s.
	OpenFor time.Duration `yaml:"open_for"`
	// Probes is how many calls a half-open breaker lets through; all must
	// succeed to close it. Default 1.
	Probes int `yaml:"probes"`
}

// withDefaults fills the zero fields of r's backends and breaker.
func (r Routing) withDefaults() Routing {
	r.Backends = slices.Clone(r.Backends)
	for i := range r.Backends {
		b := &r.Backends[i]
		if b.Weight == 0 {
			b.Weight = DefaultWeight
		}
		if b.MaxConcurrency == 0 {
			b.MaxConcurrency = DefaultMaxConcurrency
		}
		if b.Timeout == 0 {
			b.Timeout = DefaultTimeout
		}
		if b.ConnectTimeout == 0 {
			b.ConnectTimeout = DefaultConnectTimeout
		}
		if b.FirstTokenTimeout == 0 {
			b.FirstTokenTimeout = b.Timeout
		}
	}
	if r.Breaker.Failures == 0 {
		r.Breaker.Failures = DefaultBreakerFailures
	}
	if r.Breaker.OpenFor == 0 {
		r.Breaker.OpenFor = DefaultBreakerOpenFor
	}
	if r.Breaker.Probes == 0 {
		r.Breaker.Probes = DefaultBreakerProbes
	}
	return r
}

// LoadBackends reads and validates a backends file. Values may name
// environment variables as ${VAR} or ${VAR:-default}; API keys are read
// from the variables the backends name.
func LoadBackends(path string) (Routing, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Routing{}, fmt.Errorf("backends file: %w", err)
	}
	r, err := ParseBackends(data)
	if err != nil {
		return Routing{}, fmt.Errorf("backends file %s: %w", path, err)
	}
	return r, nil
}

// ParseBackends parses and validates the YAML form of a backends file.
func ParseBackends(data []byte) (Routing, error) {
	expanded := os.Expand(string(data), expandDefault)
	dec := yaml.NewDecoder(bytes.NewReader([]byte(expanded)))
	dec.KnownFields(true)
	var r Routing
	if err := dec.Decode(&r); err != nil {
		return Routing{}, fmt.Errorf("parse: %w", err)
	}
	for i := range r.Backends {
		b := &r.Backends[i]
		if b.APIKeyEnv == "" {
			continue
		}
		if b.APIKey = os.Getenv(b.APIKeyEnv); b.APIKey == "" {
			return Routing{}, fmt.Errorf("backend %s: api_key_env %s is not set", b.Name, b.APIKeyEnv)
		}
	}
	if err := r.Validate(); err != nil {
		return Routing{}, err
	}
	return r, nil
}

// expandDefault resolves VAR or VAR:-default from the environment.
func expandDefault(s string) string {
	name, def, hasDef := strings.Cut(s, ":-")
	if v, ok := os.LookupEnv(name); ok && (v != "" || !hasDef) {
		return v
	}
	return def
}

// Models returns the model names requests may ask for: every served model
// and every alias.
func (r Routing) Models() []string {
	var out []string
	for _, b := range r.Backends {
		out = append(out, b.Models...)
	}
	for alias := range r.Aliases {
		out = append(out, alias)
	}
	return out
}

// Validate reports the first error of r.
func (r Routing) Validate() error {
	served, err := validateBackends(r.Backends)
	if err != nil {
		return err
	}
	if err := r.validateModels(served); err != nil {
		return err
	}
	limits := map[string]Limit{"default": r.Tenants.Default}
	for t, l := range r.Tenants.Overrides {
		limits["tenant "+t] = l
	}
	for name, l := range limits {
		if l.RequestsPerMinute < 0 || l.TokensPerMinute < 0 {
			return fmt.Errorf("tenants: %s: limits must not be negative", name)
		}
	}
	if r.Breaker.Failures < 0 || r.Breaker.OpenFor < 0 || r.Breaker.Probes < 0 {
		return errors.New("breaker: failures, open_for and probes must not be negative")
	}
	return nil
}

// validateBackends checks the backends and returns the models they serve.
func validateBackends(bs []Backend) (served map[string]bool, err error) {
	if len(bs) == 0 {
		return nil, errors.New("no backends configured")
	}
	names := map[string]bool{}
	served = map[string]bool{}
	for i, b := range bs {
		if names[b.Name] {
			return nil, fmt.Errorf("backends[%d]: name %q is used twice", i, b.Name)
		}
		if err := b.validate(i); err != nil {
			return nil, err
		}
		for _, m := range b.Models {
			served[m] = true
		}
		names[b.Name] = true
	}
	return served, nil
}

// validate checks backend b, the i-th of the file.
func (b Backend) validate(i int) error {
	switch {
	case b.Name == "":
		return fmt.Errorf("backends[%d]: name is required", i)
	case !strings.HasPrefix(b.BaseURL, "http://") && !strings.HasPrefix(b.BaseURL, "https://"):
		return fmt.Errorf("backend %s: base_url %q must start with http:// or https://", b.Name, b.BaseURL)
	case len(b.Models) == 0:
		return fmt.Errorf("backend %s: models must list at least one model", b.Name)
	case b.Weight < 0 || b.MaxConcurrency < 0 || b.RequestsPerMinute < 0 || b.TokensPerMinute < 0:
		return fmt.Errorf("backend %s: weight, max_concurrency and limits must not be negative", b.Name)
	case b.Timeout < 0 || b.FirstTokenTimeout < 0 || b.ConnectTimeout < 0:
		return fmt.Errorf("backend %s: timeouts must not be negative", b.Name)
	case strings.ContainsAny(b.APIKey, "\r\n"):
		return fmt.Errorf("backend %s: the API key must not contain line breaks", b.Name)
	}
	if err := (llm.Config{BaseURL: b.BaseURL}).Validate(); err != nil {
		return fmt.Errorf("backend %s: %w", b.Name, err)
	}
	for _, m := range b.Models {
		if strings.TrimSpace(m) == "" {
			return fmt.Errorf("backend %s: empty model name", b.Name)
		}
	}
	return nil
}

// validateModels checks that aliases and fallbacks name served models.
func (r Routing) validateModels(served map[string]bool) error {
	for alias, target := range r.Aliases {
		switch {
		case served[alias]:
			return fmt.Errorf("alias %q: a backend serves a model of that name", alias)
		case !served[target]:
			return fmt.Errorf("alias %q: no backend serves its target %q", alias, target)
		}
	}
	for model, chain := range r.Fallbacks {
		if !served[model] {
			return fmt.Errorf("fallbacks of %q: no backend serves it", model)
		}
		for _, f := range chain {
			switch {
			case f == model:
				return fmt.Errorf("fallbacks of %q: a model cannot fall back to itself", model)
			case !served[f]:
				return fmt.Errorf("fallbacks of %q: no backend serves %q", model, f)
			}
		}
	}
	return nil
}

// chain returns the models to try for the requested name, in order: the
// model (after aliases) and its fallbacks. It is nil for an unknown model.
func (r Routing) chain(requested string, served map[string]bool) []string {
	model := requested
	if target, ok := r.Aliases[requested]; ok {
		model = target
	}
	if !served[model] {
		return nil
	}
	return append([]string{model}, r.Fallbacks[model]...)
}
