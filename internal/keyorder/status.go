package keyorder

import (
	"fmt"
	"slices"
	"strings"
)

// Status is a snapshot of the engine's place in its group, for readiness
// probes and operators.
type Status struct {
	// Group is the consumer group.
	Group string
	// InstanceID is the static membership ID; empty for a dynamic member.
	InstanceID string
	// MemberID and Generation are the group's names for this member and
	// its current assignment ("" and -1 before the first join).
	MemberID   string
	Generation int32
	// Joined reports that the member has completed a join (the group gave
	// it an assignment, possibly empty) and has not lost its session
	// since. A member with no partitions is still joined: the group has
	// more members than partitions, and it takes over when one leaves.
	Joined bool
	// Partitions are the partitions the engine holds, by topic, sorted.
	Partitions map[string][]int32
}

// Held returns the number of partitions held.
func (s Status) Held() int {
	n := 0
	for _, ps := range s.Partitions {
		n += len(ps)
	}
	return n
}

// String is a short report, e.g.
// "group switchboard-router member w-1 (static), generation 7, 3 partitions: requests.batch[0 4] requests.interactive[2]".
func (s Status) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "group %s", s.Group)
	if s.InstanceID != "" {
		fmt.Fprintf(&b, " member %s (static)", s.InstanceID)
	}
	if !s.Joined {
		b.WriteString(", not joined")
		return b.String()
	}
	fmt.Fprintf(&b, ", generation %d, %d partitions", s.Generation, s.Held())
	topics := make([]string, 0, len(s.Partitions))
	for t := range s.Partitions {
		topics = append(topics, t)
	}
	slices.Sort(topics)
	for i, t := range topics {
		if i == 0 {
			b.WriteString(":")
		}
		fmt.Fprintf(&b, " %s%v", t, s.Partitions[t])
	}
	return b.String()
}

// Status returns the engine's group membership and the partitions it
// holds. It is safe to call at any time, from any goroutine.
func (e *Engine) Status() Status {
	member, gen := e.cl.GroupMetadata()
	s := Status{
		Group:      e.cfg.Group,
		InstanceID: e.cfg.InstanceID,
		MemberID:   member,
		Generation: gen,
		Partitions: map[string][]int32{},
	}
	e.mu.Lock()
	s.Joined = e.joined
	for tp, p := range e.parts {
		if !p.closing {
			s.Partitions[tp.topic] = append(s.Partitions[tp.topic], tp.partition)
		}
	}
	e.mu.Unlock()
	for _, ps := range s.Partitions {
		slices.Sort(ps)
	}
	return s
}
