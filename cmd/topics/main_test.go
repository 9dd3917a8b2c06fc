package main

import (
	"bytes"
	"net"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

func noEnv(string) string { return "" }

func TestRun(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	brokers := strings.Join(c.ListenAddrs(), ",")
	env := func(k string) string {
		if k == "SWITCHBOARD_BROKERS" {
			return brokers
		}
		return ""
	}

	tests := []struct {
		name string
		args []string
		env  func(string) string
		want []string
	}{
		{
			name: "creates with flags",
			args: []string{"--brokers", brokers, "--replication-factor", "1", "--topic-prefix", "a."},
			env:  noEnv,
			want: []string{"created  a.requests.interactive\n", "created  a.deadletter\n"},
		},
		{
			name: "second run in sync",
			args: []string{"--brokers", brokers, "--replication-factor", "1", "--topic-prefix", "a."},
			env:  noEnv,
			want: []string{"in sync  a.requests.interactive\n", "in sync  a.deadletter\n"},
		},
		{
			name: "brokers from the environment, empty prefix",
			args: []string{"--replication-factor", "1", "--topic-prefix", ""},
			env:  env,
			want: []string{"created  requests.batch\n", "created  results\n"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := run(t.Context(), tt.args, tt.env, &stdout, &stderr); err != nil {
				t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(stdout.String(), w) {
					t.Errorf("stdout: got %q, want it to contain %q", stdout.String(), w)
				}
			}
		})
	}
}

func TestRunErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	unreachable := ln.Addr().String()
	ln.Close()

	tests := []struct {
		name string
		args []string
		want string
	}{
		{name: "unreachable", args: []string{"--brokers", unreachable, "--timeout", "300ms"}, want: "context deadline exceeded"},
		{name: "bad replication factor", args: []string{"--replication-factor", "-1"}, want: "out of range"},
		{name: "missing file", args: []string{"--topics-file", "/nonexistent/topics.yaml"}, want: "no such file"},
		{name: "bad prefix", args: []string{"--topic-prefix", "a b", "--brokers", unreachable}, want: "invalid character"},
		{name: "extra argument", args: []string{"extra"}, want: "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), tt.args, noEnv, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run: got %v, want an error containing %q", err, tt.want)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout: got %q, want nothing", stdout.String())
			}
		})
	}
}
