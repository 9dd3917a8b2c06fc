package stack

import (
	"context"
	"strings"
	"testing"

	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
)

func TestValidate(t *testing.T) {
	if err := (Config{}).Validate(); err == nil {
		t.Error("no bin and dir: no error")
	}
	err := (Config{Bin: t.TempDir(), Dir: t.TempDir()}).Validate()
	if err == nil || !strings.Contains(err.Error(), "make build") {
		t.Errorf("missing binaries: err = %v, want one that says make build", err)
	}
}

func TestUseKafka(t *testing.T) {
	for _, tc := range []struct {
		choice, brokers string
		ok              bool
	}{
		{"", "", true},
		{"devbroker", "", true},
		{"127.0.0.1:9092,127.0.0.1:9093", "127.0.0.1:9092,127.0.0.1:9093", true},
		{"kafka", "", false},
	} {
		cfg := Config{Brokers: "stale"}
		err := UseKafka(context.Background(), &cfg, tc.choice, ".", kafkalocal.Config{})
		if (err == nil) != tc.ok {
			t.Errorf("UseKafka(%q): err = %v, want ok %v", tc.choice, err, tc.ok)
			continue
		}
		if tc.ok && cfg.Brokers != tc.brokers {
			t.Errorf("UseKafka(%q): brokers %q, want %q", tc.choice, cfg.Brokers, tc.brokers)
		}
	}
}

func TestBinaryOf(t *testing.T) {
	for name, want := range map[string]string{"router-worker": "router-worker", "router-worker-3": "router-worker", "egress": "egress"} {
		if got := binaryOf(name); got != want {
			t.Errorf("binaryOf(%s) = %s, want %s", name, got, want)
		}
	}
}

// A binary's Kafka settings reach only its processes, and an mTLS
// principal's own listeners replace the stack's brokers.
func TestKafkaEnv(t *testing.T) {
	s := &Stack{Brokers: "127.0.0.1:29292", cfg: Config{CursorSecret: "c", KafkaEnv: map[string][]string{
		ProcIngress: {"SWITCHBOARD_BROKERS=127.0.0.1:29392", "SWITCHBOARD_KAFKA_TLS=on"},
		ProcEgress:  {"SWITCHBOARD_KAFKA_SASL_USERNAME=egress"},
	}}}
	if got := s.brokersOf(ProcIngress); got != "127.0.0.1:29392" {
		t.Errorf("ingress brokers %s, want its own 127.0.0.1:29392", got)
	}
	if got := s.brokersOf(ProcEgress); got != "127.0.0.1:29292" {
		t.Errorf("egress brokers %s, want the stack's", got)
	}
	env := strings.Join(s.env(ProcEgress), "\n")
	if !strings.Contains(env, "SWITCHBOARD_KAFKA_SASL_USERNAME=egress") || strings.Contains(env, "SWITCHBOARD_KAFKA_TLS=on") {
		t.Errorf("egress's environment has another binary's settings or lacks its own")
	}
}
