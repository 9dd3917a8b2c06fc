package llm

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Defaults used for zero Config fields.
const (
	// DefaultBaseURL is the address modelsim listens on by default.
	DefaultBaseURL = "http://127.0.0.1:8090/v1"
	// DefaultMaxConns is the default size of the connection pool.
	DefaultMaxConns = 64
	// DefaultConnectTimeout bounds dialing and the TLS handshake.
	DefaultConnectTimeout = 5 * time.Second
	// DefaultFirstTokenTimeout bounds the wait for a stream's first token.
	DefaultFirstTokenTimeout = 30 * time.Second
	// DefaultTotalTimeout bounds a whole call.
	DefaultTotalTimeout = 5 * time.Minute
)

// Config configures a Client. The zero value talks to a local modelsim.
type Config struct {
	// BaseURL is the API root, the part before "/chat/completions", such as
	// "http://127.0.0.1:8090/v1" or "https://api.openai.com/v1". Empty means
	// DefaultBaseURL.
	BaseURL string

	// APIKey, when set, is sent as "Authorization: Bearer <APIKey>".
	APIKey string

	// MaxConns is the most connections the client opens to the backend, and
	// keeps idle. Calls beyond it wait for a free connection (bounded by
	// their context and timeouts). Zero means DefaultMaxConns.
	MaxConns int

	// ConnectTimeout bounds dialing and the TLS handshake. Zero means
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration

	// FirstTokenTimeout bounds the time from the start of a Stream call to
	// its first generated token. Zero means DefaultFirstTokenTimeout.
	FirstTokenTimeout time.Duration

	// TotalTimeout bounds a whole call, Complete or Stream. Zero means
	// DefaultTotalTimeout.
	TotalTimeout time.Duration
}

// withDefaults returns c with its zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	if c.BaseURL == "" {
		c.BaseURL = DefaultBaseURL
	}
	if c.MaxConns == 0 {
		c.MaxConns = DefaultMaxConns
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.FirstTokenTimeout == 0 {
		c.FirstTokenTimeout = DefaultFirstTokenTimeout
	}
	if c.TotalTimeout == 0 {
		c.TotalTimeout = DefaultTotalTimeout
	}
	return c
}

// Validate reports whether c, with defaults applied, is usable.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	if u, err := url.Parse(c.BaseURL); err != nil {
		errs = append(errs, fmt.Errorf("base url: %w", err))
	} else {
		if u.Scheme != "http" && u.Scheme != "https" {
			errs = append(errs, fmt.Errorf("base url %q: scheme must be http or https", c.BaseURL))
		}
		if u.Host == "" {
			errs = append(errs, fmt.Errorf("base url %q: missing host", c.BaseURL))
		}
		if u.RawQuery != "" || u.Fragment != "" {
			errs = append(errs, fmt.Errorf("base url %q: must not have a query or fragment", c.BaseURL))
		}
	}
	if strings.ContainsAny(c.APIKey, "\r\n") {
		errs = append(errs, errors.New("api key: must not contain line breaks"))
	}
	if c.MaxConns < 0 {
		errs = append(errs, fmt.Errorf("max conns %d: must not be negative", c.MaxConns))
	}
	for _, d := range []struct {
		name string
		d    time.Duration
	}{
		{"connect timeout", c.ConnectTimeout},
		{"first token timeout", c.FirstTokenTimeout},
		{"total timeout", c.TotalTimeout},
	} {
		if d.d < 0 {
			errs = append(errs, fmt.Errorf("%s %v: must not be negative", d.name, d.d))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("llm config: %w", err)
	}
	return nil
}
