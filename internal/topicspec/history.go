package topicspec

import (
	"fmt"
	"slices"
	"strings"
)

// The history topic is co-partitioned with the requests topics:
// router-worker writes a conversation's history to the partition number
// of the conversation's requests partition and, when it is assigned a
// requests partition, rebuilds the histories from the history partition of
// the same number. That holds only while the topics have the same
// partition count, and the history survives only if the topic is
// compacted (each record holds a conversation's whole history; compaction
// keeps the latest and removes tombstoned ones).

// checkHistory reports what is wrong with the spec's history topic, if it
// has one.
func (s *Spec) checkHistory() []error {
	h, ok := s.Topic(History)
	if !ok {
		return nil
	}
	var errs []error
	for _, name := range []string{RequestsInteractive, RequestsBatch} {
		if r, ok := s.Topic(name); ok && r.Partitions != h.Partitions {
			errs = append(errs, fmt.Errorf("topic %q: partitions: must equal %s's (%d) to be co-partitioned with it, got %d",
				History, name, r.Partitions, h.Partitions))
		}
	}
	if !compacted(h.Configs["cleanup.policy"]) {
		errs = append(errs, fmt.Errorf("topic %q: configs: cleanup.policy must include compact, got %q", History, h.Configs["cleanup.policy"]))
	}
	return errs
}

// compacted reports whether a cleanup.policy value includes compact.
func compacted(policy string) bool {
	return slices.Contains(strings.Split(strings.ReplaceAll(policy, " ", ""), ","), "compact")
}

// checkCopartitioned compares the partition counts the cluster holds of
// the history topic and the requests topics: current (by full name) as
// Reconcile found them, the spec's count for those it created or grew.
// Topics the cluster does not hold (or that failed) are not compared.
func (s *Spec) checkCopartitioned(current map[string]int32, created, grown map[string]bool) error {
	if _, ok := s.Topic(History); !ok {
		return nil
	}
	count := func(logical string) (int32, bool) {
		name := s.Name(logical)
		if created[name] || grown[name] {
			t, _ := s.Topic(logical)
			return t.Partitions, true
		}
		n, ok := current[name]
		return n, ok
	}
	h, ok := count(History)
	if !ok {
		return nil
	}
	for _, name := range []string{RequestsInteractive, RequestsBatch} {
		if n, ok := count(name); ok && n != h {
			return fmt.Errorf("topic %s: %d partitions, but %s has %d: conversations' histories are not co-partitioned "+
				"with their requests (grow the smaller to match; router-worker refuses memory requests until then)",
				s.Name(History), h, s.Name(name), n)
		}
	}
	return nil
}
