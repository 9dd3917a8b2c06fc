package daemon

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// The Kafka connection settings are the same flags and environment
// variables in every binary: parsed from either, into Env.Kafka.
func TestKafkaSettings(t *testing.T) {
	dir := t.TempDir()
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte("from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want func(kafkaconf.Config) bool
	}{
		{"plaintext by default", nil, nil, func(c kafkaconf.Config) bool { return !c.TLS.Enabled && c.SASL.Mechanism == "" }},
		{"environment", nil, map[string]string{
			"SWITCHBOARD_KAFKA_TLS": "on", "SWITCHBOARD_KAFKA_TLS_SERVER_NAME": "kafka.local",
			"SWITCHBOARD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "SWITCHBOARD_KAFKA_SASL_USERNAME": "ingress",
			"SWITCHBOARD_KAFKA_SASL_PASSWORD_FILE": pw,
		}, func(c kafkaconf.Config) bool {
			return c.TLS.Enabled && c.TLS.ServerName == "kafka.local" && c.SASL.Mechanism == "SCRAM-SHA-512" &&
				c.SASL.Username == "ingress" && c.SASL.PasswordFile == pw
		}},
		{"flags", []string{"--kafka-tls", "--kafka-sasl-mechanism", "PLAIN", "--kafka-sasl-username", "u", "--kafka-sasl-password", "p"}, nil,
			func(c kafkaconf.Config) bool { return c.TLS.Enabled && c.SASL.Password == "p" }},
		{"tls off in the environment", nil, map[string]string{"SWITCHBOARD_KAFKA_TLS": "off"}, func(c kafkaconf.Config) bool { return !c.TLS.Enabled }},
		{"password from the environment", nil, map[string]string{"SWITCHBOARD_KAFKA_SASL_MECHANISM": "PLAIN",
			"SWITCHBOARD_KAFKA_SASL_USERNAME": "u", "SWITCHBOARD_KAFKA_SASL_PASSWORD": "p"},
			func(c kafkaconf.Config) bool { return c.SASL.Password == "p" && !c.TLS.Enabled }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got kafkaconf.Config
			d := New(Program{Name: "x", Kafka: true})
			d.kafkaWait = 0 // no cluster here: do not wait for one
			err := d.Run(t.Context(), append([]string{"--brokers", "127.0.0.1:1"}, tc.args...), env(tc.env), &bytes.Buffer{}, &bytes.Buffer{},
				func(_ context.Context, e *Env) error { got = e.Kafka; return nil })
			if err != nil {
				t.Fatal(err)
			}
			if !tc.want(got) {
				t.Errorf("got TLS %+v SASL %+v", got.TLS, got.SASL)
			}
		})
	}
}

// Bad Kafka settings stop the start as a usage error (exit status 2) that
// names the setting, and never shows the password.
func TestKafkaSettingsRefused(t *testing.T) {
	const password = "never-shown-p4ss"
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"bad on/off", nil, map[string]string{"SWITCHBOARD_KAFKA_TLS": "maybe"}, "SWITCHBOARD_KAFKA_TLS"},
		{"unknown mechanism", []string{"--kafka-sasl-mechanism", "KERBEROS", "--kafka-sasl-username", "u", "--kafka-sasl-password", password}, nil, "unknown SASL mechanism"},
		{"cert without key", []string{"--kafka-tls", "--kafka-tls-cert-file", "c.pem"}, nil, "--kafka-tls-key-file"},
		{"scram without password", nil, map[string]string{"SWITCHBOARD_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256", "SWITCHBOARD_KAFKA_SASL_USERNAME": "u"}, "--kafka-sasl-password"},
		{"password without mechanism", nil, map[string]string{"SWITCHBOARD_KAFKA_SASL_USERNAME": "u", "SWITCHBOARD_KAFKA_SASL_PASSWORD": password}, "--kafka-sasl-mechanism"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := New(Program{Name: "x", Kafka: true})
			var stderr bytes.Buffer
			err := d.Run(t.Context(), tc.args, env(tc.env), &bytes.Buffer{}, &stderr, func(context.Context, *Env) error {
				t.Error("ran with bad settings")
				return nil
			})
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want a usage error naming %s", err, tc.want)
			}
			if code := d.exitCode(err, &stderr); code != 2 {
				t.Errorf("exit code %d, want 2", code)
			}
			if strings.Contains(err.Error()+stderr.String(), password) {
				t.Errorf("the password was shown: %v\n%s", err, stderr.String())
			}
		})
	}
}

// A file that cannot be read fails the start (not a usage error: the
// settings are fine, the file is not), naming the file.
func TestKafkaFileMissing(t *testing.T) {
	d := New(Program{Name: "x", Kafka: true})
	err := d.Run(t.Context(), []string{"--kafka-tls", "--kafka-tls-ca-file", "/nonexistent/ca.pem"}, nil, &bytes.Buffer{}, &bytes.Buffer{},
		func(context.Context, *Env) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "/nonexistent/ca.pem") {
		t.Errorf("err = %v, want one naming the CA file", err)
	}
}
