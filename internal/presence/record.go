// Package presence shares each tenant's rate limit among the running
// ingress instances, through Kafka alone. Every instance publishes, about
// once a second, a record to the compacted presence topic (topics.yaml,
// ingress.presence) keyed by its instance ID: its interval and the demand
// it observed per tenant (requests and estimated tokens per second, counted
// before the limit decides, refusals included; only tenants with recent
// traffic, at most MaxTenants). Every instance reads every record (a
// consumer without a group), takes as live the instances whose last record
// is younger than three of their intervals, and gives itself, for each
// tenant, a share of the tenant's limit in proportion to its demand, with a
// floor so that an idle instance can start serving (see Compute). All
// instances compute from the same records, so the shares add up to the
// whole limit.
//
// A stopping instance writes a tombstone for its key, so the others take
// its share at their next interval; a crashed one is dropped when its last
// record is three intervals old. While an instance cannot read its own
// records back (Kafka unreachable, the topic missing or not readable), it
// holds limit/N, N being the live count it last knew, and says so in its
// log and in Shares.Degraded. docs/LIMITS.md gives the error bounds.
package presence

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"
)

// Bounds of a record, checked by Decode and kept by Encode's callers.
const (
	// MaxTenants bounds the tenants of one record; an instance publishes
	// its busiest ones.
	MaxTenants = 1000
	// MaxNameBytes bounds an instance ID and a tenant name.
	MaxNameBytes = 256
	// MaxRecordBytes bounds a record's value (MaxTenants long names fit).
	MaxRecordBytes = 512 << 10
	// maxRunBytes bounds a run ID.
	maxRunBytes = 64
	// maxDemand bounds one demand figure (per second).
	maxDemand = 1e15
	// minInterval and maxInterval bound a record's interval.
	minInterval, maxInterval = 10 * time.Millisecond, time.Minute
)

// Demand is the load an instance observed for one tenant, per second,
// smoothed over its last intervals.
type Demand struct {
	// Requests is the requests per second that reached the limit check.
	Requests float64 `json:"requests"`
	// Tokens is their estimated tokens per second.
	Tokens float64 `json:"tokens"`
}

// Record is the value an instance publishes under its ID.
type Record struct {
	// Instance is the publishing instance's ID (also the record's key).
	Instance string `json:"instance"`
	// Run tells this run of the instance from earlier ones under the same
	// ID (random, made at start).
	Run string `json:"run"`
	// IntervalMillis is how often the instance publishes; a reader takes
	// it as gone three intervals after its last record.
	IntervalMillis int64 `json:"interval_ms"`
	// Tenants holds the instance's demand by tenant name, for tenants with
	// recent traffic only.
	Tenants map[string]Demand `json:"tenants,omitempty"`
}

// Interval returns the record's publishing interval.
func (r *Record) Interval() time.Duration { return time.Duration(r.IntervalMillis) * time.Millisecond }

// ErrInvalid is wrapped by every error of Decode.
var ErrInvalid = errors.New("invalid presence record")

// Encode returns r's value.
func Encode(r *Record) []byte {
	v, _ := json.Marshal(r) // a Record of finite numbers always marshals
	return v
}

// Decode reads the value published under key. A nil value is a tombstone
// (the instance stopped): the caller checks for it first.
func Decode(key, value []byte) (Record, error) {
	var r Record
	if len(value) > MaxRecordBytes {
		return r, fmt.Errorf("%w: %d bytes, more than %d", ErrInvalid, len(value), MaxRecordBytes)
	}
	if err := json.Unmarshal(value, &r); err != nil {
		return Record{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	switch {
	case r.Instance == "" || len(r.Instance) > MaxNameBytes || !utf8.ValidString(r.Instance):
		return Record{}, fmt.Errorf("%w: instance ID must be 1 to %d bytes of UTF-8", ErrInvalid, MaxNameBytes)
	case len(r.Run) > maxRunBytes:
		return Record{}, fmt.Errorf("%w: run ID longer than %d bytes", ErrInvalid, maxRunBytes)
	case string(key) != r.Instance:
		return Record{}, fmt.Errorf("%w: key %q is not the instance ID %q", ErrInvalid, key, r.Instance)
	case r.Interval() < minInterval || r.Interval() > maxInterval:
		return Record{}, fmt.Errorf("%w: interval %dms outside [%v, %v]", ErrInvalid, r.IntervalMillis, minInterval, maxInterval)
	case len(r.Tenants) > MaxTenants:
		return Record{}, fmt.Errorf("%w: %d tenants, more than %d", ErrInvalid, len(r.Tenants), MaxTenants)
	}
	for name, d := range r.Tenants {
		if name == "" || len(name) > MaxNameBytes {
			return Record{}, fmt.Errorf("%w: tenant name must be 1 to %d bytes", ErrInvalid, MaxNameBytes)
		}
		if !valid(d.Requests) || !valid(d.Tokens) {
			return Record{}, fmt.Errorf("%w: tenant %q: demand must be in [0, %g]", ErrInvalid, name, maxDemand)
		}
	}
	return r, nil
}

func valid(f float64) bool { return f >= 0 && f <= maxDemand && !math.IsNaN(f) }
