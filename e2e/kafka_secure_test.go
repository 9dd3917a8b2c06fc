//go:build kafka

// The real-Kafka suite on the secured local cluster (make kafka-up
// KAFKA_SECURITY=sasl_ssl): SASL_SSL with SCRAM-SHA-512, PLAIN and
// OAUTHBEARER, mTLS, the StandardAuthorizer with nothing allowed that no ACL
// allows. One cluster serves every test here: the running one, or one
// started at the first test and stopped after the last. Each stack runs its
// services as their own principals with only their ACLs (internal/acl),
// applied by the topics step as the admin.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/acl"
	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/kafkalocal"
	"github.com/switchboard-llm/switchboard/internal/stack"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// TestRealKafkaSecured runs every secured test on one secured cluster: the
// running one, or one it starts and stops again at its end (so the suite's
// plaintext tests, after it, do not share the machine with it).
func TestRealKafkaSecured(t *testing.T) {
	c := securedKafka(t)
	t.Run("stack", func(t *testing.T) { securedStackFlow(t, c) })
	t.Run("refusals", func(t *testing.T) { securedRefusals(t, c) })
}

// securedKafka returns the secured local cluster, started when it is not
// running (and then stopped at t's end).
func securedKafka(t *testing.T) *kafkalocal.Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	c, err := kafkalocal.New(kafkalocal.Config{Dir: filepath.Join("..", "data", "kafka"), POM: filepath.Join("..", "deploy", "kafka-local", "pom.xml"),
		Out: os.Stderr, Security: kafkalocal.SecuritySASLSSL, PortOffset: portOffset()})
	if err == nil {
		if c.Running() == 0 {
			t.Log("starting the secured local cluster (stopped again at the end of this test)")
			t.Cleanup(func() {
				if err := c.Down(time.Minute); err != nil {
					t.Errorf("stopping the secured cluster: %v", err)
				}
			})
		}
		// On a running cluster Up only (re)creates the SCRAM users and env files.
		err = c.Up(ctx)
	}
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no secured Apache Kafka cluster: %v", err)
		}
		t.Skipf("no secured Apache Kafka cluster (%v): make kafka-up KAFKA_SECURITY=sasl_ssl", err)
	}
	return c
}

// securedStack shapes a stack on the secured cluster whose processes
// authenticate with auth, with topics and a group of t's own.
func securedStack(t *testing.T, c *kafkalocal.Cluster, auth string) apptest.StackOptions {
	t.Helper()
	name := strings.Trim(nameRE.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	run := fmt.Sprintf("it%06x-%s", time.Now().UnixNano()&0xffffff, strings.TrimPrefix(name, "testrealkafkasecured-"))
	var cfg stack.Config
	stack.UseSecured(&cfg, c, auth)
	admin := c.Admin()
	t.Cleanup(func() { deleteTopicsWith(t, admin, run+".") })
	return apptest.StackOptions{Brokers: c.Brokers(), Cluster: c, TopicPrefix: run + ".", RouterGroup: run + "-router",
		KafkaEnv: cfg.KafkaEnv, ACLs: cfg.ACLs}
}

// securedStackFlow: the whole stack on the secured cluster, once
// per way of authenticating (SCRAM-SHA-512, PLAIN and OAUTHBEARER over TLS,
// and mTLS), each service as its own principal holding only the ACLs
// internal/acl gives its role (with SCRAM, router-worker runs
// --exactly-once, so its transactional-ID grant is tested too): requests go
// in, streamed answers come out.
// The services' logs never show a password (the SCRAM run's).
func securedStackFlow(t *testing.T, c *kafkalocal.Cluster) {
	for _, auth := range kafkalocal.Auths {
		t.Run(auth, func(t *testing.T) {
			opts := securedStack(t, c, auth)
			if auth == kafkalocal.AuthSCRAM {
				// Exactly-once needs the transactional-ID grant too.
				opts.RouterArgs = []string{"--exactly-once"}
			}
			s := apptest.StartStack(t, bin, opts)
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
			defer cancel()
			for i := range 3 {
				conv := fmt.Sprintf("secured-%d", i)
				ack, err := postMessage(ctx, s.IngressURL, conv, `{"model":"sim","stream":true,"messages":[{"role":"user","content":"hello over TLS"}]}`)
				if err != nil {
					t.Fatalf("post: %v", err)
				}
				waitAnswer(ctx, t, s.EgressURL, conv, ack.RequestID)
			}
			outs := s.Outputs()
			for _, name := range []string{"topics", "ingress", "router-worker", "egress"} {
				if !strings.Contains(outs[name], "kafka connection") {
					t.Errorf("%s did not log its Kafka connection", name)
				}
			}
			for _, p := range kafkalocal.Principals {
				b, err := os.ReadFile(c.PasswordFile(p))
				if err != nil {
					t.Fatal(err)
				}
				pw := strings.TrimSpace(string(b))
				for name, out := range outs {
					if strings.Contains(out, pw) {
						t.Errorf("%s's output shows %s's password", name, p)
					}
				}
			}
		})
	}
}

// securedRefusals: what the secured cluster refuses, and how
// the binaries say so: a wrong password ends the start at once with a clear
// message (no retry loop); a client without TLS, or without its
// certificate on the mTLS listener, cannot connect; ingress, router-worker,
// egress and redrive, each with one of its ACLs removed, stop at start
// naming the missing operation and resource (and redrive, given it back,
// runs with only its ACLs).
func securedRefusals(t *testing.T, c *kafkalocal.Cluster) {
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	opts := securedStack(t, c, kafkalocal.AuthSCRAM)
	prefix, group := opts.TopicPrefix, opts.RouterGroup
	runBin := func(name string, env []string, args ...string) (string, error, time.Duration) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin[name], args...)
		cmd.Env = append(os.Environ(), env...)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		return string(out), err, time.Since(start)
	}
	if out, err, _ := runBin("topics", c.Env(kafkalocal.PrincipalAdmin, kafkalocal.AuthSCRAM), "--topic-prefix", prefix); err != nil {
		t.Fatalf("topics as admin: %v\n%s", err, out)
	}

	t.Run("wrong password", func(t *testing.T) {
		wrong := filepath.Join(t.TempDir(), "pw")
		if err := os.WriteFile(wrong, []byte("not-the-password\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		env := append(c.Env(kafkalocal.PrincipalRouter, kafkalocal.AuthSCRAM), "SWITCHBOARD_KAFKA_SASL_PASSWORD_FILE="+wrong)
		out, err, took := runBin("router-worker", env, "--topic-prefix", prefix, "--group", group, "--admin-addr", "127.0.0.1:0",
			"--backends", filepath.Join("..", "backends.yaml"))
		if err == nil || !strings.Contains(out, `SASL SCRAM-SHA-512 authentication as user "router" failed`) {
			t.Errorf("router-worker with a wrong password: %v\n%s\nwant an exit naming the failed authentication", err, out)
		}
		if took > 20*time.Second {
			t.Errorf("the start took %v to fail, want a fast failure", took)
		}
		if strings.Contains(out, "not-the-password") {
			t.Error("the output shows the password")
		}
	})

	t.Run("no TLS", func(t *testing.T) {
		out, err, _ := runBin("topics", nil, "--brokers", c.Brokers(), "--topic-prefix", prefix, "--timeout", "5s")
		if err == nil || !strings.Contains(out, "tls") {
			t.Errorf("plaintext client on the SASL_SSL listener: %v\n%s\nwant a failure about TLS", err, out)
		}
	})

	t.Run("mTLS without a certificate", func(t *testing.T) {
		k := c.Client(kafkalocal.PrincipalAdmin, kafkalocal.AuthMTLS)
		out, err, _ := runBin("topics", nil, "--brokers", strings.Join(k.Brokers, ","), "--kafka-tls", "--kafka-tls-ca-file", k.TLS.CAFile,
			"--topic-prefix", prefix, "--timeout", "5s")
		if err == nil || !strings.Contains(out, "refused the TLS handshake") {
			t.Errorf("TLS without a client certificate on the mTLS listener: %v\n%s\nwant a refused handshake", err, out)
		}
	})

	// One ACL removed from each service's role: the start stops at once,
	// naming it.
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	spec = spec.WithPrefix(prefix)
	cl, err := kgo.NewClient(c.Admin().Opts(nil)...)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	adm := kadm.NewClient(cl)
	redriveGroup := group + "-redrive"
	for _, tc := range []struct {
		role, principal string
		remove          int // index of the grant removed
		args            []string
	}{
		{acl.RoleIngress, kafkalocal.PrincipalIngress, 1, []string{"--addr", "127.0.0.1:0", "--grpc-addr", "", "--tenants", filepath.Join("..", "tenants.yaml"), "--router-group", group}},
		{acl.RoleRouter, kafkalocal.PrincipalRouter, 2, []string{"--group", group, "--backends", filepath.Join("..", "backends.yaml")}},
		{acl.RoleEgress, kafkalocal.PrincipalEgress, 0, []string{"--addr", "127.0.0.1:0", "--tenants", filepath.Join("..", "tenants.yaml"), "--router-group", group}},
		{acl.RoleRedrive, kafkalocal.PrincipalRedrive, 1, []string{"--group", redriveGroup}},
	} {
		t.Run("missing ACL "+tc.role, func(t *testing.T) {
			grants, err := acl.For(tc.role, acl.Params{Topics: spec, RouterGroup: group, RedriveGroup: redriveGroup})
			if err != nil {
				t.Fatal(err)
			}
			principal := "User:" + tc.principal
			if err := acl.Apply(ctx, adm, principal, grants); err != nil {
				t.Fatal(err)
			}
			removed := grants[tc.remove]
			if err := acl.Delete(ctx, adm, principal, []acl.Grant{removed}); err != nil {
				t.Fatal(err)
			}
			// ACL changes take a moment to reach every broker: wait until
			// the cluster reports the grant missing to the principal.
			pcl, err := kgo.NewClient(c.Client(tc.principal, kafkalocal.AuthSCRAM).Opts(nil)...)
			if err != nil {
				t.Fatal(err)
			}
			defer pcl.Close()
			if err := apptest.Wait(30*time.Second, func() error {
				if err := acl.Check(ctx, pcl, grants, principal); !errors.Is(err, acl.ErrMissing) {
					return fmt.Errorf("check: %v", err)
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			args := append([]string{"--topic-prefix", prefix}, tc.args...)
			if tc.role != acl.RoleRedrive { // redrive has no admin listener
				args = append(args, "--admin-addr", "127.0.0.1:0")
			}
			out, err, took := runBin(tc.role, c.Env(tc.principal, kafkalocal.AuthSCRAM), args...)
			want := principal + " may not " + removed.String()
			if err == nil || !strings.Contains(out, want) {
				t.Errorf("%s without %s: exit %v\n%s\nwant an exit naming %q", tc.role, removed, err, out, want)
			}
			if took > 30*time.Second {
				t.Errorf("%s without %s failed after %v, want a fast failure", tc.role, removed, took)
			}
			if tc.role != acl.RoleRedrive {
				return
			}
			// With the grant back, redrive (a one-shot tool) runs with
			// only its ACLs.
			if err := acl.Apply(ctx, adm, principal, []acl.Grant{removed}); err != nil {
				t.Fatal(err)
			}
			if err := apptest.Wait(30*time.Second, func() error { return acl.Check(ctx, pcl, grants, principal) }); err != nil {
				t.Fatal(err)
			}
			if out, err, _ := runBin(tc.role, c.Env(tc.principal, kafkalocal.AuthSCRAM), args...); err != nil {
				t.Errorf("redrive with its ACLs: %v\n%s", err, out)
			}
		})
	}
}
