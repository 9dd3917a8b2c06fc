package topicspec

import (
	"fmt"
	"strings"
)

// Report says what [Reconcile] did and what it found but left alone. Topics
// are named by their full names (prefix included) and listed in spec order.
type Report struct {
	// Created lists the topics Reconcile created.
	Created []string
	// Grown lists the topics whose partition count Reconcile raised.
	Grown []Growth
	// Surplus lists topics with more partitions than the spec asks for.
	// Reconcile never removes partitions.
	Surplus []Surplus
	// Drift lists topic configs whose cluster value differs from the spec.
	// Reconcile never alters configs.
	Drift []Drift
	// InSync lists existing topics Reconcile found matching the spec and
	// left untouched.
	InSync []string
}

// Growth records a partition count that Reconcile raised.
type Growth struct {
	Topic string // Topic is the topic's full name.
	From  int32  // From is the partition count before.
	To    int32  // To is the partition count after, the spec's.
}

// Surplus records a topic that has more partitions than the spec asks for.
type Surplus struct {
	Topic string // Topic is the topic's full name.
	Want  int32  // Want is the spec's partition count.
	Got   int32  // Got is the cluster's partition count.
}

// Drift records a topic config whose cluster value differs from the spec.
type Drift struct {
	Topic string // Topic is the topic's full name.
	Key   string // Key is the config name, for example retention.ms.
	Want  string // Want is the spec's value.
	Got   string // Got is the cluster's value; empty if the cluster did not report the key.
}

// Changed reports whether Reconcile changed the cluster (created topics or
// added partitions).
func (r *Report) Changed() bool {
	return len(r.Created) > 0 || len(r.Grown) > 0
}

// String renders the report for people, one line per finding, for example:
//
//	created  switchboard.results
//	grown    switchboard.requests.batch: 12 -> 24 partitions
//	surplus  switchboard.deadletter: 24 partitions, spec asks for 12 (left as is)
//	drift    switchboard.results: retention.ms = "1000" on the cluster, spec wants "86400000" (left as is)
//	in sync  switchboard.requests.interactive
//
// An empty report, as returned when Reconcile fails before touching any
// topic, renders as "".
func (r *Report) String() string {
	var b strings.Builder
	for _, t := range r.Created {
		fmt.Fprintf(&b, "created  %s\n", t)
	}
	for _, g := range r.Grown {
		fmt.Fprintf(&b, "grown    %s: %d -> %d partitions\n", g.Topic, g.From, g.To)
	}
	for _, s := range r.Surplus {
		fmt.Fprintf(&b, "surplus  %s: %d partitions, spec asks for %d (left as is)\n", s.Topic, s.Got, s.Want)
	}
	for _, d := range r.Drift {
		fmt.Fprintf(&b, "drift    %s: %s = %q on the cluster, spec wants %q (left as is)\n", d.Topic, d.Key, d.Got, d.Want)
	}
	for _, t := range r.InSync {
		fmt.Fprintf(&b, "in sync  %s\n", t)
	}
	return b.String()
}
