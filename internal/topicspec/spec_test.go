package topicspec

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	switchboard "github.com/switchboard-llm/switchboard"
)

// minimal is a valid spec document the table tests below vary.
const minimal = `
prefix: sb.
defaults:
  partitions: 3
  replication_factor: 2
  configs:
    compression.type: zstd
    retention.ms: "1000"
topics:
  - name: requests.interactive
  - name: requests.batch
    partitions: 6
    replication_factor: 1
    configs:
      retention.ms: "2000"
      max.message.bytes: "1048576"
  - name: results
  - name: deadletter
`

func TestParseMergesDefaults(t *testing.T) {
	spec, err := Parse([]byte(minimal))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	want := &Spec{
		Prefix: "sb.",
		Topics: []Topic{
			{Name: RequestsInteractive, Partitions: 3, ReplicationFactor: 2,
				Configs: map[string]string{"compression.type": "zstd", "retention.ms": "1000"}},
			{Name: RequestsBatch, Partitions: 6, ReplicationFactor: 1,
				Configs: map[string]string{"compression.type": "zstd", "retention.ms": "2000", "max.message.bytes": "1048576"}},
			{Name: Results, Partitions: 3, ReplicationFactor: 2,
				Configs: map[string]string{"compression.type": "zstd", "retention.ms": "1000"}},
			{Name: DeadLetter, Partitions: 3, ReplicationFactor: 2,
				Configs: map[string]string{"compression.type": "zstd", "retention.ms": "1000"}},
		},
	}
	if !reflect.DeepEqual(spec, want) {
		t.Errorf("Parse:\ngot  %+v\nwant %+v", spec, want)
	}
}

func TestParseEmbedded(t *testing.T) {
	spec, err := Load("")
	if err != nil {
		t.Fatalf("Load(\"\"): %v", err)
	}
	if got, want := spec.Prefix, "switchboard."; got != want {
		t.Errorf("prefix: got %q, want %q", got, want)
	}
	tests := []struct {
		logical  string
		name     string
		maxBytes string
	}{
		{RequestsInteractive, "switchboard.requests.interactive", "1048576"},
		{RequestsBatch, "switchboard.requests.batch", "1048576"},
		{Results, "switchboard.results", "2097152"},
		{DeadLetter, "switchboard.deadletter", "4194304"},
	}
	for _, tt := range tests {
		if got := spec.Name(tt.logical); got != tt.name {
			t.Errorf("Name(%q): got %q, want %q", tt.logical, got, tt.name)
		}
		topic, ok := spec.Topic(tt.logical)
		if !ok {
			t.Fatalf("Topic(%q): missing", tt.logical)
		}
		if topic.Partitions != 12 || topic.ReplicationFactor != 3 {
			t.Errorf("%s: got %d partitions rf %d, want 12 rf 3", tt.logical, topic.Partitions, topic.ReplicationFactor)
		}
		for k, want := range map[string]string{
			"compression.type":    "zstd",
			"min.insync.replicas": "2",
			"max.message.bytes":   tt.maxBytes,
		} {
			if got := topic.Configs[k]; got != want {
				t.Errorf("%s: config %s: got %q, want %q", tt.logical, k, got, want)
			}
		}
		if topic.Configs["retention.ms"] == "" {
			t.Errorf("%s: retention.ms missing", tt.logical)
		}
	}

	viaParse, err := Parse(switchboard.TopicsYAML)
	if err != nil {
		t.Fatalf("Parse(TopicsYAML): %v", err)
	}
	if !reflect.DeepEqual(spec, viaParse) {
		t.Errorf("Load(\"\") and Parse(TopicsYAML) differ")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name    string
		doc     string
		want    []string // substrings of the error
		invalid bool     // whether the error wraps ErrInvalid
	}{
		{name: "empty", doc: "", want: []string{"empty document"}},
		{name: "not yaml", doc: "prefix: [", want: []string{"parse topic spec"}},
		{name: "two documents", doc: minimal + "\n---\nprefix: x\n", want: []string{"more than one"}},
		{name: "unknown top-level field", doc: minimal + "extra: 1\n", want: []string{"field extra not found"}},
		{
			name: "unknown topic field",
			doc:  strings.Replace(minimal, "  - name: results\n", "  - name: results\n    partition: 4\n", 1),
			want: []string{"field partition not found"},
		},
		{
			name: "unknown defaults field",
			doc:  strings.Replace(minimal, "  partitions: 3\n", "  partitions: 3\n  retention: 4\n", 1),
			want: []string{"field retention not found"},
		},
		{
			name: "partitions not a number",
			doc:  strings.Replace(minimal, "partitions: 6", "partitions: six", 1),
			want: []string{"parse topic spec"},
		},
		{
			name:    "missing topic",
			doc:     strings.Replace(minimal, "  - name: deadletter\n", "", 1),
			want:    []string{`topic "deadletter": missing`},
			invalid: true,
		},
		{
			name:    "duplicate topic",
			doc:     minimal + "  - name: results\n",
			want:    []string{`topic "results": name: listed more than once`},
			invalid: true,
		},
		{
			name:    "no partitions anywhere",
			doc:     strings.Replace(minimal, "  partitions: 3\n", "", 1),
			want:    []string{`topic "results": partitions: must be at least 1, got 0`},
			invalid: true,
		},
		{
			name:    "zero partitions",
			doc:     strings.Replace(minimal, "partitions: 6", "partitions: 0", 1),
			want:    []string{`topic "requests.batch": partitions: must be at least 1, got 0`},
			invalid: true,
		},
		{
			name:    "negative replication factor",
			doc:     strings.Replace(minimal, "replication_factor: 1", "replication_factor: -1", 1),
			want:    []string{`topic "requests.batch": replication_factor: must be at least 1, got -1`},
			invalid: true,
		},
		{
			name:    "bad character in name",
			doc:     minimal + "  - name: extra/topic\n",
			want:    []string{`topic "extra/topic": name: invalid character '/'`},
			invalid: true,
		},
		{
			name:    "bad character in prefix",
			doc:     strings.Replace(minimal, "prefix: sb.", `prefix: "sb:"`, 1),
			want:    []string{`prefix "sb:": invalid character ':'`},
			invalid: true,
		},
		{
			name:    "name too long with prefix",
			doc:     minimal + "  - name: " + strings.Repeat("x", 247) + "\n",
			want:    []string{"250 characters long with the prefix, more than 249"},
			invalid: true,
		},
		{
			name:    "empty name",
			doc:     minimal + "  - partitions: 1\n",
			want:    []string{"topic #5: name: empty"},
			invalid: true,
		},
		{
			name:    "empty config value",
			doc:     strings.Replace(minimal, `max.message.bytes: "1048576"`, `max.message.bytes: ""`, 1),
			want:    []string{`topic "requests.batch": configs: max.message.bytes: empty value`},
			invalid: true,
		},
		{
			name:    "null config value",
			doc:     strings.Replace(minimal, `max.message.bytes: "1048576"`, `max.message.bytes:`, 1),
			want:    []string{`topic "requests.batch": configs: max.message.bytes: empty value`},
			invalid: true,
		},
		{
			name: "several problems reported together",
			doc:  strings.Replace(strings.Replace(minimal, "partitions: 6", "partitions: 0", 1), "  - name: results\n", "", 1),
			want: []string{
				`topic "requests.batch": partitions: must be at least 1`,
				`topic "results": missing`,
			},
			invalid: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec, err := Parse([]byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse: got spec %+v, want an error", spec)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse error: got %q, want it to contain %q", err, w)
				}
			}
			if got := errors.Is(err, ErrInvalid); got != tt.invalid {
				t.Errorf("errors.Is(err, ErrInvalid): got %v, want %v (err %q)", got, tt.invalid, err)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	valid := func() *Spec {
		s, err := Parse([]byte(minimal))
		if err != nil {
			t.Fatalf("Parse: %v", err)
		}
		return s
	}
	tests := []struct {
		name   string
		modify func(*Spec)
		want   string // "" means valid
	}{
		{name: "valid", modify: func(*Spec) {}},
		{name: "no prefix", modify: func(s *Spec) { s.Prefix = "" }},
		{name: "extra topic allowed", modify: func(s *Spec) {
			s.Topics = append(s.Topics, Topic{Name: "audit", Partitions: 1, ReplicationFactor: 1})
		}},
		{name: "dot name", modify: func(s *Spec) {
			s.Prefix = ""
			s.Topics = append(s.Topics, Topic{Name: ".", Partitions: 1, ReplicationFactor: 1})
		}, want: `topic ".": name: "." is not a legal topic name`},
		{name: "empty config key", modify: func(s *Spec) { s.Topics[2].Configs[""] = "x" }, want: `topic "results": configs: empty key`},
		{name: "zero replication factor", modify: func(s *Spec) { s.Topics[3].ReplicationFactor = 0 },
			want: `topic "deadletter": replication_factor: must be at least 1, got 0`},
		{name: "long prefix", modify: func(s *Spec) { s.Prefix = strings.Repeat("p", 240) },
			want: `topic "requests.interactive": name:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := valid()
			tt.modify(s)
			err := s.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate: got %v, want nil", err)
			case tt.want != "" && err == nil:
				t.Errorf("Validate: got nil, want an error containing %q", tt.want)
			case tt.want != "" && !strings.Contains(err.Error(), tt.want):
				t.Errorf("Validate: got %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestWithPrefixAndReplicationFactor(t *testing.T) {
	orig, err := Load("")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	before := orig.clone()

	p := orig.WithPrefix("other.")
	if got, want := p.Name(Results), "other.results"; got != want {
		t.Errorf("WithPrefix Name: got %q, want %q", got, want)
	}

	tests := []struct {
		rf      int16
		wantISR string
	}{
		{rf: 1, wantISR: "1"},
		{rf: 2, wantISR: "2"},
		{rf: 5, wantISR: "2"},
	}
	for _, tt := range tests {
		r := orig.WithReplicationFactor(tt.rf)
		for _, topic := range r.Topics {
			if topic.ReplicationFactor != tt.rf {
				t.Errorf("rf %d: %s: got rf %d", tt.rf, topic.Name, topic.ReplicationFactor)
			}
			if got := topic.Configs["min.insync.replicas"]; got != tt.wantISR {
				t.Errorf("rf %d: %s: min.insync.replicas: got %q, want %q", tt.rf, topic.Name, got, tt.wantISR)
			}
		}
		if err := r.Validate(); err != nil {
			t.Errorf("rf %d: Validate: %v", tt.rf, err)
		}
	}

	// The copies must not share state with the original.
	topic, _ := p.Topic(Results)
	topic.Configs["retention.ms"] = "1"
	p.Topics[0].Configs["retention.ms"] = "1"
	if !reflect.DeepEqual(orig, before) {
		t.Errorf("original spec changed by its copies")
	}
	if got, _ := p.Topic(Results); got.Configs["retention.ms"] == "1" {
		t.Errorf("Topic returned a map shared with the spec")
	}
	if _, ok := orig.Topic("nope"); ok {
		t.Errorf("Topic(\"nope\"): got ok")
	}
}

func TestLoadFile(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "topics.yaml")
	if err := os.WriteFile(good, []byte(minimal), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("prefix: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path    string
		wantErr string
	}{
		{path: good},
		{path: bad, wantErr: "bad.yaml"},
		{path: filepath.Join(dir, "missing.yaml"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		spec, err := Load(tt.path)
		switch {
		case tt.wantErr == "" && err != nil:
			t.Errorf("Load(%s): %v", tt.path, err)
		case tt.wantErr == "" && !maps.Equal(spec.Topics[1].Configs, map[string]string{
			"compression.type": "zstd", "retention.ms": "2000", "max.message.bytes": "1048576",
		}):
			t.Errorf("Load(%s): got configs %v", tt.path, spec.Topics[1].Configs)
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("Load(%s): got %v, want an error containing %q", tt.path, err, tt.wantErr)
		}
	}
}

func TestHistoryTopicChecks(t *testing.T) {
	base := `prefix: s.
defaults: {partitions: 4, replication_factor: 1}
topics:
  - name: requests.interactive
  - name: requests.batch
  - name: results
  - name: deadletter
`
	cases := []struct {
		name, history, wantErr string
	}{
		{"co-partitioned and compacted", "  - name: history\n    configs: {cleanup.policy: \"compact,delete\"}\n", ""},
		{"no history topic", "", ""},
		{"other partition count", "  - name: history\n    partitions: 8\n    configs: {cleanup.policy: compact}\n", "must equal requests.interactive's (4)"},
		{"not compacted", "  - name: history\n    configs: {cleanup.policy: delete}\n", "cleanup.policy must include compact"},
		{"no policy", "  - name: history\n", "cleanup.policy must include compact"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(base + c.history))
			switch {
			case c.wantErr == "" && err != nil:
				t.Fatalf("Parse: got %v, want no error", err)
			case c.wantErr != "" && (err == nil || !strings.Contains(err.Error(), c.wantErr)):
				t.Fatalf("Parse: got %v, want an error with %q", err, c.wantErr)
			}
		})
	}
}
