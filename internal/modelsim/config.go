package modelsim

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// Defaults used for zero Config fields.
const (
	// DefaultModel is the model served when Config.Models is empty.
	DefaultModel = "sim"
	// DefaultLongTailLatency is the long-tail latency used when
	// Config.LongTailFraction is set but Config.LongTailLatency is zero.
	DefaultLongTailLatency = 1500 * time.Millisecond
	// DefaultMinCompletionTokens is the shortest default answer, in words.
	DefaultMinCompletionTokens = 8
	// DefaultMaxCompletionTokens is the longest default answer, in words.
	DefaultMaxCompletionTokens = 48
)

// Config configures a Server. The zero value is valid: it serves the model
// "sim" with no added latency and answers of 8 to 48 words.
type Config struct {
	// Models are the model names the server accepts and lists. Empty means
	// []string{DefaultModel}. Names must be non-empty and unique.
	Models []string

	// BaseLatency is the latency of an ordinary request: the time to the
	// JSON answer, or the time over which a stream is spread. Zero means no
	// latency, which suits unit tests; the modelsim binary defaults to 200ms.
	BaseLatency time.Duration

	// Jitter adds a uniform offset in [-Jitter, +Jitter] to every request's
	// latency. The result is never below zero.
	Jitter time.Duration

	// LongTailFraction is the fraction of requests, in [0, 1], that take
	// LongTailLatency instead of BaseLatency.
	LongTailFraction float64

	// LongTailLatency replaces BaseLatency for the long-tail fraction of
	// requests. Zero means DefaultLongTailLatency.
	LongTailLatency time.Duration

	// Seed seeds the PRNG that draws latencies and long-tail decisions, so
	// a run can be repeated. Content does not depend on it.
	Seed uint64

	// MinCompletionTokens is the shortest answer, in words, before
	// max_tokens is applied. Zero means DefaultMinCompletionTokens.
	MinCompletionTokens int

	// MaxCompletionTokens is the longest answer, in words, before
	// max_tokens is applied. Zero means DefaultMaxCompletionTokens, or
	// MinCompletionTokens if that is larger.
	MaxCompletionTokens int

	// Faults injects errors, hangs, resets and slow first tokens; see
	// Faults. Server.SetFaults changes them while the server runs.
	Faults Faults
}

// withDefaults returns c with its zero fields replaced by defaults.
func (c Config) withDefaults() Config {
	if len(c.Models) == 0 {
		c.Models = []string{DefaultModel}
	}
	if c.LongTailLatency == 0 {
		c.LongTailLatency = DefaultLongTailLatency
	}
	if c.MinCompletionTokens == 0 {
		c.MinCompletionTokens = DefaultMinCompletionTokens
	}
	if c.MaxCompletionTokens == 0 {
		c.MaxCompletionTokens = max(DefaultMaxCompletionTokens, c.MinCompletionTokens)
	}
	return c
}

// Validate reports whether c, with defaults applied, is usable.
func (c Config) Validate() error {
	c = c.withDefaults()
	var errs []error
	seen := make(map[string]bool, len(c.Models))
	for _, m := range c.Models {
		switch {
		case strings.TrimSpace(m) == "":
			errs = append(errs, errors.New("models: empty model name"))
		case seen[m]:
			errs = append(errs, fmt.Errorf("models: duplicate model %q", m))
		}
		seen[m] = true
	}
	if c.BaseLatency < 0 {
		errs = append(errs, fmt.Errorf("base latency %v: must not be negative", c.BaseLatency))
	}
	if c.Jitter < 0 {
		errs = append(errs, fmt.Errorf("jitter %v: must not be negative", c.Jitter))
	}
	if !(c.LongTailFraction >= 0 && c.LongTailFraction <= 1) { // also rejects NaN
		errs = append(errs, fmt.Errorf("long tail fraction %v: must be in [0, 1]", c.LongTailFraction))
	}
	if c.LongTailLatency < 0 {
		errs = append(errs, fmt.Errorf("long tail latency %v: must not be negative", c.LongTailLatency))
	}
	if c.MinCompletionTokens < 0 {
		errs = append(errs, fmt.Errorf("min completion tokens %d: must not be negative", c.MinCompletionTokens))
	}
	if c.MaxCompletionTokens < c.MinCompletionTokens {
		errs = append(errs, fmt.Errorf("max completion tokens %d: must be at least min completion tokens %d",
			c.MaxCompletionTokens, c.MinCompletionTokens))
	}
	if err := c.Faults.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("faults: %w", err))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("modelsim config: %w", err)
	}
	return nil
}
