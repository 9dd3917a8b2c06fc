// Package status is the small periodic status record each service
// publishes about itself to the compacted status topic, so that the
// console (internal/console, served by egress) can show what only the
// serving process knows: router-worker's backends with their breaker
// states, limits and latency, and its in-flight conversations; ingress's
// admission state. The services still never call each other: the records
// travel through Kafka.
//
// A record is JSON (docs/RECORDS.md describes every field), keyed
// "<service>/<instance>", so compaction keeps each instance's latest one.
// Its size is bounded by MaxBytes (lists are cut to fit, and Truncated
// says so) and its rate by the publisher's interval (one record per
// instance per interval, default 2s). A clean stop writes a tombstone for
// the key; a crashed instance's record stays until the console sees it is
// older than Record.Stale says, and until retention removes it.
package status

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Version is the schema version of the records this package writes.
// Decode accepts records of this version only.
const Version = 1

// MaxBytes bounds an encoded record. Encode cuts the longest lists
// (conversations, then backends, then partitions) until the record fits.
const MaxBytes = 16 << 10

// Bounds of a record's lists, before the byte bound.
const (
	// MaxConversations is how many in-flight conversations a record
	// lists (the longest-running first); InFlight counts them all.
	MaxConversations = 32
	// MaxBackends is how many backends a record lists.
	MaxBackends = 64
	// maxString bounds every string a record carries (IDs, names).
	maxString = 200
)

// The services that publish status records.
const (
	ServiceIngress = "ingress"
	ServiceRouter  = "router-worker"
)

// Breaker states, as the router's breaker gauge names them.
const (
	BreakerClosed   = "closed"
	BreakerHalfOpen = "half-open"
	BreakerOpen     = "open"
)

// Record is one status record: one instance's state at one moment.
type Record struct {
	// Version is the schema version (Version).
	Version int `json:"v"`
	// Service is ServiceIngress or ServiceRouter; Instance names the
	// process (its static instance ID, or host and PID). The record's key
	// is Service + "/" + Instance.
	Service  string `json:"service"`
	Instance string `json:"instance"`
	// At is when the record was made; IntervalMS how often the instance
	// publishes (a record older than three intervals is stale).
	At         time.Time `json:"at"`
	IntervalMS int64     `json:"interval_ms"`
	// Truncated reports that lists were cut to fit MaxBytes.
	Truncated bool `json:"truncated,omitempty"`
	// Router is set by router-worker, Ingress by ingress.
	Router  *Router  `json:"router,omitempty"`
	Ingress *Ingress `json:"ingress,omitempty"`
}

// Router is a router-worker's state.
type Router struct {
	// Group and MemberID are its consumer group and its member ID there.
	Group    string `json:"group"`
	MemberID string `json:"member_id,omitempty"`
	// Partitions are the requests partitions it holds, by topic.
	Partitions map[string][]int32 `json:"partitions,omitempty"`
	// InFlight counts the requests being processed; MaxInFlight is the
	// budget.
	InFlight    int `json:"in_flight"`
	MaxInFlight int `json:"max_in_flight"`
	// Conversations are the in-flight requests, longest-running first (at
	// most MaxConversations).
	Conversations []Conversation `json:"conversations,omitempty"`
	// System is the system breaker: BreakerOpen when every backend's
	// breaker is open (consumption is paused), else BreakerClosed.
	System string `json:"system"`
	// Backends are the backends of its backends file (at most
	// MaxBackends).
	Backends []Backend `json:"backends,omitempty"`
}

// Conversation is one request in flight.
type Conversation struct {
	ID        string    `json:"id"`
	Topic     string    `json:"topic"`
	Partition int32     `json:"partition"`
	Offset    int64     `json:"offset"`
	Since     time.Time `json:"since"`
}

// Backend is one model backend as a router-worker sees it.
type Backend struct {
	Name   string   `json:"name"`
	Models []string `json:"models,omitempty"`
	// Breaker is the endpoint breaker's state (BreakerClosed, ...).
	Breaker string `json:"breaker"`
	// InFlight calls now, of MaxConcurrency.
	InFlight       int `json:"in_flight"`
	MaxConcurrency int `json:"max_concurrency"`
	// RequestsPerMinute and TokensPerMinute are the configured limits (0:
	// none).
	RequestsPerMinute int `json:"requests_per_minute,omitempty"`
	TokensPerMinute   int `json:"tokens_per_minute,omitempty"`
	// Calls and Failures count the calls of the last latency window
	// (Window); P50MS and P99MS are their latencies in milliseconds.
	Calls    int     `json:"calls"`
	Failures int     `json:"failures"`
	P50MS    float64 `json:"p50_ms"`
	P99MS    float64 `json:"p99_ms"`
}

// Ingress is an ingress's state.
type Ingress struct {
	// Admission is off when ingress runs with --no-admission; then Lanes
	// is empty.
	Admission bool   `json:"admission"`
	Group     string `json:"group,omitempty"`
	Lanes     []Lane `json:"lanes,omitempty"`
}

// Lane is the admission state of one lane.
type Lane struct {
	Lane string `json:"lane"`
	// Shedding reports that the lane's requests are refused (429/503).
	Shedding bool `json:"shedding"`
	// Lag is the lag that drives the lane (the batch lane's is the total);
	// High and Low the marks.
	Lag  int64 `json:"lag"`
	High int64 `json:"high"`
	Low  int64 `json:"low"`
	// DrainPerSec is the measured drain rate, records per second.
	DrainPerSec float64 `json:"drain_per_sec"`
}

// Key returns the record key of service's instance.
func Key(service, instance string) string { return service + "/" + instance }

// Key returns the record's key.
func (r *Record) Key() string { return Key(r.Service, r.Instance) }

// Stale reports whether the record is older than three of its intervals
// at now: the instance stopped publishing (crashed, or cut off).
func (r *Record) Stale(now time.Time) bool {
	iv := time.Duration(r.IntervalMS) * time.Millisecond
	return now.Sub(r.At) > 3*max(iv, time.Second)
}

// Encode returns the record's JSON, cutting lists (and setting Truncated)
// so that it fits MaxBytes. It changes r's lists when it cuts.
func Encode(r *Record) ([]byte, error) {
	r.Version = Version
	clip(r)
	for {
		b, err := json.Marshal(r)
		if err != nil {
			return nil, fmt.Errorf("status: encode: %w", err)
		}
		if len(b) <= MaxBytes {
			return b, nil
		}
		if !cut(r) {
			return nil, fmt.Errorf("status: encode: %d bytes, more than %d with nothing left to cut", len(b), MaxBytes)
		}
		r.Truncated = true
	}
}

// clip applies the list and string bounds.
func clip(r *Record) {
	r.Instance = clipString(r.Instance)
	if rt := r.Router; rt != nil {
		if len(rt.Conversations) > MaxConversations {
			rt.Conversations, r.Truncated = rt.Conversations[:MaxConversations], true
		}
		if len(rt.Backends) > MaxBackends {
			rt.Backends, r.Truncated = rt.Backends[:MaxBackends], true
		}
		for i := range rt.Conversations {
			rt.Conversations[i].ID = clipString(rt.Conversations[i].ID)
		}
		for i := range rt.Backends {
			rt.Backends[i].Name = clipString(rt.Backends[i].Name)
		}
	}
}

// cut halves the longest cuttable list; false when none is left.
func cut(r *Record) bool {
	rt := r.Router
	if rt == nil {
		return false
	}
	switch {
	case len(rt.Conversations) > 0:
		rt.Conversations = rt.Conversations[:len(rt.Conversations)/2]
	case len(rt.Backends) > 0:
		rt.Backends = rt.Backends[:len(rt.Backends)/2]
	case len(rt.Partitions) > 0:
		rt.Partitions = nil
	default:
		return false
	}
	return true
}

func clipString(s string) string {
	if len(s) <= maxString {
		return s
	}
	return strings.ToValidUTF8(s[:maxString], "")
}

// ErrTombstone is Decode's answer to a record without a value: the
// instance stopped cleanly.
var ErrTombstone = errors.New("status: tombstone")

// Decode reads a status record. The key must be the record's own
// (service/instance); records larger than MaxBytes, of another version,
// of an unknown service or without a time are refused with an error.
func Decode(key, value []byte) (*Record, error) {
	if value == nil {
		return nil, ErrTombstone
	}
	if len(value) > MaxBytes {
		return nil, fmt.Errorf("status: record of %d bytes, more than %d", len(value), MaxBytes)
	}
	var r Record
	dec := json.NewDecoder(bytes.NewReader(value))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("status: decode: %w", err)
	}
	if dec.More() {
		return nil, errors.New("status: decode: data after the record")
	}
	switch {
	case r.Version != Version:
		return nil, fmt.Errorf("status: version %d, want %d", r.Version, Version)
	case r.Service != ServiceIngress && r.Service != ServiceRouter:
		return nil, fmt.Errorf("status: unknown service %q", r.Service)
	case r.Instance == "":
		return nil, errors.New("status: no instance")
	case string(key) != r.Key():
		return nil, fmt.Errorf("status: key %q is not the record's %q", key, r.Key())
	case r.At.IsZero():
		return nil, errors.New("status: no time")
	case r.IntervalMS < 0:
		return nil, errors.New("status: negative interval")
	case (r.Service == ServiceRouter) != (r.Router != nil) || (r.Service == ServiceIngress) != (r.Ingress != nil):
		return nil, fmt.Errorf("status: a %s record must carry its own section only", r.Service)
	}
	return &r, nil
}
