// Package topicspec holds Switchboard's topic specification: it loads
// topics.yaml (the single source of truth for topic names, partition counts,
// replication factors and configs), validates it, and reconciles a Kafka
// cluster with it.
//
// Every binary reads topic names from a [Spec] rather than from literals:
//
//	spec, err := topicspec.Load("")              // "" = the embedded topics.yaml
//	requests := spec.Name(topicspec.RequestsInteractive) // "switchboard.requests.interactive"
//
// [Reconcile] (and [Provision], which dials a cluster first) is idempotent and
// conservative: it creates missing topics, adds partitions when the spec asks
// for more, and reports, without changing anything, topics that have more
// partitions than the spec and configs whose values differ from the spec. It
// never deletes a topic, never removes partitions and never alters a config.
package topicspec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"strconv"

	"go.yaml.in/yaml/v3"

	switchboard "github.com/switchboard-llm/switchboard"
)

// The logical names of the topics every Switchboard deployment has. A topic's
// full name is the spec's prefix followed by its logical name; see
// [Spec.Name].
const (
	// RequestsInteractive carries requests a person is waiting for.
	RequestsInteractive = "requests.interactive"
	// RequestsBatch carries bulk requests, consumed with their own budget.
	RequestsBatch = "requests.batch"
	// Results carries streamed chunks and terminal results.
	Results = "results"
	// DeadLetter carries records that could not be processed.
	DeadLetter = "deadletter"
	// Models is the compacted topic through which router-workers tell
	// ingress the models they serve (see internal/catalog). Optional: a
	// spec without it turns that check off.
	Models = "models"
	// Status is the compacted topic of each instance's status record
	// (internal/status), read by the console. Optional: a spec without it
	// turns the status records off.
	Status = "status"
	// History is the compacted topic holding each conversation's memory
	// (see docs/RECORDS.md), co-partitioned with the requests topics: it
	// must have their partition count and a compact cleanup policy
	// (checked by Validate and, on the cluster, by Reconcile). Optional: a
	// spec without it turns conversations with memory off.
	History = "history"
)

// requiredTopics returns the logical topics a valid spec must hold, in the
// order errors name them.
func requiredTopics() []string {
	return []string{RequestsInteractive, RequestsBatch, Results, DeadLetter}
}

// Spec is a parsed topic specification. A Spec is a value: the With methods
// return modified copies and never change the receiver.
type Spec struct {
	// Prefix is prepended to every logical topic name to form the name used
	// on the cluster, for example "switchboard.".
	Prefix string
	// Topics lists the topics in file order, with the file's defaults
	// already merged in.
	Topics []Topic
}

// Topic is one topic of a [Spec].
type Topic struct {
	// Name is the logical name, without the spec's prefix.
	Name string
	// Partitions is the partition count the topic should have at least.
	Partitions int32
	// ReplicationFactor is the replication factor used when the topic is
	// created. Reconcile does not change it on existing topics.
	ReplicationFactor int16
	// Configs holds topic configs (for example retention.ms): the file's
	// default configs overridden by the topic's own.
	Configs map[string]string
}

// specFile is the YAML shape of topics.yaml. Pointers tell "absent" from
// "zero" so that a topic may inherit the defaults.
type specFile struct {
	Prefix   string       `yaml:"prefix"`
	Defaults fileDefaults `yaml:"defaults"`
	Topics   []fileTopic  `yaml:"topics"`
}

type fileDefaults struct {
	Partitions        *int32            `yaml:"partitions"`
	ReplicationFactor *int16            `yaml:"replication_factor"`
	Configs           map[string]string `yaml:"configs"`
}

type fileTopic struct {
	Name              string            `yaml:"name"`
	Partitions        *int32            `yaml:"partitions"`
	ReplicationFactor *int16            `yaml:"replication_factor"`
	Configs           map[string]string `yaml:"configs"`
}

// Parse decodes a topics.yaml document, merges the defaults into every topic
// and validates the result (see [Spec.Validate]). Decoding is strict: unknown
// fields, and more than one YAML document, are errors.
func Parse(data []byte) (*Spec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f specFile
	if err := dec.Decode(&f); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("parse topic spec: empty document")
		}
		return nil, fmt.Errorf("parse topic spec: %w", err)
	}
	var extra any
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("parse topic spec: more than one YAML document")
	}

	spec := &Spec{Prefix: f.Prefix, Topics: make([]Topic, 0, len(f.Topics))}
	for _, ft := range f.Topics {
		t := Topic{Name: ft.Name, Configs: make(map[string]string, len(f.Defaults.Configs)+len(ft.Configs))}
		switch {
		case ft.Partitions != nil:
			t.Partitions = *ft.Partitions
		case f.Defaults.Partitions != nil:
			t.Partitions = *f.Defaults.Partitions
		}
		switch {
		case ft.ReplicationFactor != nil:
			t.ReplicationFactor = *ft.ReplicationFactor
		case f.Defaults.ReplicationFactor != nil:
			t.ReplicationFactor = *f.Defaults.ReplicationFactor
		}
		maps.Copy(t.Configs, f.Defaults.Configs)
		maps.Copy(t.Configs, ft.Configs)
		spec.Topics = append(spec.Topics, t)
	}
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	return spec, nil
}

// Load reads and parses the topic spec at path. An empty path means the
// topics.yaml embedded in every binary ([switchboard.TopicsYAML]).
func Load(path string) (*Spec, error) {
	if path == "" {
		return Parse(switchboard.TopicsYAML)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load topic spec: %w", err)
	}
	spec, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return spec, nil
}

// Name returns the full name of a logical topic: the prefix followed by
// logical. It does not check that the spec holds the topic; callers pass
// the package's constants, which a valid spec always holds.
func (s *Spec) Name(logical string) string {
	return s.Prefix + logical
}

// Topic returns the topic with the given logical name, and whether the spec
// holds it. The returned topic's Configs is a copy.
func (s *Spec) Topic(logical string) (Topic, bool) {
	for _, t := range s.Topics {
		if t.Name == logical {
			return t.clone(), true
		}
	}
	return Topic{}, false
}

// WithPrefix returns a copy of the spec whose topics use prefix, for example
// to run two stacks on one cluster.
func (s *Spec) WithPrefix(prefix string) *Spec {
	c := s.clone()
	c.Prefix = prefix
	return c
}

// WithReplicationFactor returns a copy of the spec in which every topic has
// replication factor rf, for clusters with fewer brokers than the file
// assumes (a single-broker dev setup uses 1). Because a partition cannot have
// more in-sync replicas than replicas, a min.insync.replicas config larger
// than rf is lowered to rf in the copy.
func (s *Spec) WithReplicationFactor(rf int16) *Spec {
	c := s.clone()
	for i := range c.Topics {
		t := &c.Topics[i]
		t.ReplicationFactor = rf
		if v, ok := t.Configs[minInsyncReplicas]; ok {
			if n, err := strconv.Atoi(v); err == nil && n > int(rf) && rf >= 1 {
				t.Configs[minInsyncReplicas] = strconv.Itoa(int(rf))
			}
		}
	}
	return c
}

const minInsyncReplicas = "min.insync.replicas"

// Names returns the full names of the spec's topics, in spec order.
func (s *Spec) Names() []string { return s.names() }

// names returns the full names of the spec's topics, in spec order.
func (s *Spec) names() []string {
	names := make([]string, len(s.Topics))
	for i, t := range s.Topics {
		names[i] = s.Name(t.Name)
	}
	return names
}

func (s *Spec) clone() *Spec {
	c := &Spec{Prefix: s.Prefix, Topics: make([]Topic, len(s.Topics))}
	for i, t := range s.Topics {
		c.Topics[i] = t.clone()
	}
	return c
}

func (t Topic) clone() Topic {
	t.Configs = maps.Clone(t.Configs)
	if t.Configs == nil {
		t.Configs = map[string]string{}
	}
	return t
}

// MaxMessageBytes returns the smallest max.message.bytes among the given
// logical topics, or 0 when none sets it. A producer writing to those
// topics sizes its batches with it: a batch over a topic's limit is
// rejected whole.
func (s *Spec) MaxMessageBytes(logical ...string) int32 {
	var least int64
	for _, name := range logical {
		t, ok := s.Topic(name)
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(t.Configs["max.message.bytes"], 10, 32)
		if err != nil || v <= 0 {
			continue
		}
		if least == 0 || v < least {
			least = v
		}
	}
	return int32(least)
}
