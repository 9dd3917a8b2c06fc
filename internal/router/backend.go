package router

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Backend is one OpenAI-compatible model server, as configured in the
// backends file (see backends.yaml).
type Backend struct {
	// Name identifies the backend in results, logs and metrics.
	Name string `yaml:"name"`
	// BaseURL is the API root, e.g. http://127.0.0.1:8090/v1.
	BaseURL string `yaml:"base_url"`
	// APIKeyEnv names the environment variable holding the API key; empty
	// means no key is sent.
	APIKeyEnv string `yaml:"api_key_env"`
	// Models are the model names this backend serves.
	Models []string `yaml:"models"`
	// MaxConcurrency bounds open connections to the backend. Default 64.
	MaxConcurrency int `yaml:"max_concurrency"`
	// Timeout bounds one call, streaming included. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
	// FirstTokenTimeout bounds the wait for the first streamed token.
	// Default: Timeout.
	FirstTokenTimeout time.Duration `yaml:"first_token_timeout"`
}

type backendFile struct {
	Backends []Backend `yaml:"backends"`
}

// LoadBackends reads and validates a backends file. Values may name
// environment variables as ${VAR} or ${VAR:-default}.
func LoadBackends(path string) ([]Backend, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("backends file: %w", err)
	}
	bs, err := ParseBackends(data)
	if err != nil {
		return nil, fmt.Errorf("backends file %s: %w", path, err)
	}
	return bs, nil
}

// ParseBackends parses and validates the YAML form of a backends file.
func ParseBackends(data []byte) ([]Backend, error) {
	expanded := os.Expand(string(data), expandDefault)
	dec := yaml.NewDecoder(bytes.NewReader([]byte(expanded)))
	dec.KnownFields(true)
	var f backendFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	if err := validateBackends(f.Backends); err != nil {
		return nil, err
	}
	return f.Backends, nil
}

// expandDefault resolves VAR or VAR:-default from the environment.
func expandDefault(s string) string {
	name, def, hasDef := strings.Cut(s, ":-")
	if v, ok := os.LookupEnv(name); ok && (v != "" || !hasDef) {
		return v
	}
	return def
}

func validateBackends(bs []Backend) error {
	if len(bs) == 0 {
		return errors.New("no backends configured")
	}
	names := map[string]bool{}
	for i, b := range bs {
		switch {
		case b.Name == "":
			return fmt.Errorf("backends[%d]: name is required", i)
		case names[b.Name]:
			return fmt.Errorf("backends[%d]: name %q is used twice", i, b.Name)
		case !strings.HasPrefix(b.BaseURL, "http://") && !strings.HasPrefix(b.BaseURL, "https://"):
			return fmt.Errorf("backend %s: base_url %q must start with http:// or https://", b.Name, b.BaseURL)
		case len(b.Models) == 0:
			return fmt.Errorf("backend %s: models must list at least one model", b.Name)
		case b.MaxConcurrency < 0 || b.Timeout < 0 || b.FirstTokenTimeout < 0:
			return fmt.Errorf("backend %s: limits and timeouts must not be negative", b.Name)
		}
		names[b.Name] = true
	}
	return nil
}
