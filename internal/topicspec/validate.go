package topicspec

import (
	"errors"
	"fmt"
	"maps"
	"slices"
)

// ErrInvalid is wrapped by every error [Spec.Validate] returns, so callers
// can tell a bad spec from a failure to read one.
var ErrInvalid = errors.New("invalid topic spec")

// maxTopicNameLen is Kafka's limit on a topic name's length.
const maxTopicNameLen = 249

// Validate reports every problem with the spec, joined into one error that
// wraps [ErrInvalid]; each problem names the topic and the field. A valid
// spec holds each of the four logical topics ([RequestsInteractive],
// [RequestsBatch], [Results], [DeadLetter]) and no name twice; every topic
// has at least one partition and a replication factor of at least one; every
// full name (prefix included) is a legal Kafka topic name, made of
// [a-zA-Z0-9._-] and at most 249 characters long; and every config has a
// non-empty key and value.
func (s *Spec) Validate() error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(format, args...))
	}

	if c, ok := invalidChar(s.Prefix); ok {
		add("prefix %q: invalid character %q (allowed: a-z A-Z 0-9 . _ -)", s.Prefix, c)
	}

	seen := make(map[string]int, len(s.Topics))
	for i, t := range s.Topics {
		if t.Name == "" {
			add("topic #%d: name: empty", i+1)
			continue
		}
		where := fmt.Sprintf("topic %q", t.Name)
		seen[t.Name]++
		if seen[t.Name] == 2 {
			add("%s: name: listed more than once", where)
		}
		if c, ok := invalidChar(t.Name); ok {
			add("%s: name: invalid character %q (allowed: a-z A-Z 0-9 . _ -)", where, c)
		}
		if full := s.Name(t.Name); full == "." || full == ".." {
			add("%s: name: %q is not a legal topic name", where, full)
		} else if len(full) > maxTopicNameLen {
			add("%s: name: %q is %d characters long with the prefix, more than %d", where, full, len(full), maxTopicNameLen)
		}
		if t.Partitions < 1 {
			add("%s: partitions: must be at least 1, got %d", where, t.Partitions)
		}
		if t.ReplicationFactor < 1 {
			add("%s: replication_factor: must be at least 1, got %d", where, t.ReplicationFactor)
		}
		for _, k := range slices.Sorted(maps.Keys(t.Configs)) {
			switch v := t.Configs[k]; {
			case k == "":
				add("%s: configs: empty key", where)
			case v == "":
				add("%s: configs: %s: empty value", where, k)
			}
		}
	}
	for _, name := range requiredTopics() {
		if seen[name] == 0 {
			add("topic %q: missing (every spec needs %s, %s, %s and %s)", name,
				RequestsInteractive, RequestsBatch, Results, DeadLetter)
		}
	}

	errs = append(errs, s.checkHistory()...)

	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalid, errors.Join(errs...))
}

// invalidChar returns the first character of name that Kafka does not allow
// in a topic name.
func invalidChar(name string) (rune, bool) {
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9',
			c == '.', c == '_', c == '-':
		default:
			return c, true
		}
	}
	return 0, false
}
