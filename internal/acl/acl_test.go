package acl

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func spec(t *testing.T) *topicspec.Spec {
	t.Helper()
	s, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	return s.WithPrefix("p.")
}

// TestFor: each role's grants, as docs/OPERATIONS.md lists them.
func TestFor(t *testing.T) {
	for _, tc := range []struct {
		role string
		p    Params
		want []string
	}{
		{RoleIngress, Params{}, []string{"WRITE on topic p.requests.interactive", "WRITE on topic p.requests.batch", "READ on topic p.models", "DESCRIBE on group switchboard-router", "WRITE on topic p.status"}},
		{RoleIngress, Params{NoAdmission: true}, []string{"WRITE on topic p.requests.interactive", "WRITE on topic p.requests.batch", "READ on topic p.models", "WRITE on topic p.status"}},
		{RoleRouter, Params{RouterGroup: "g"}, []string{"READ on topic p.requests.interactive", "READ on topic p.requests.batch", "READ on group g",
			"WRITE on topic p.results", "WRITE on topic p.deadletter", "WRITE on topic p.models", "WRITE on topic p.status", "READ on topic p.history", "WRITE on topic p.history"}},
		{RoleRouter, Params{ExactlyOnce: true}, []string{"READ on topic p.requests.interactive", "READ on topic p.requests.batch", "READ on group switchboard-router",
			"WRITE on topic p.results", "WRITE on topic p.deadletter", "WRITE on topic p.models", "WRITE on topic p.status", "READ on topic p.history", "WRITE on topic p.history", "WRITE on transactional-id switchboard-router- (prefix)"}},
		{RoleRouter, Params{ExactlyOnce: true, TransactionalID: "tx-1"}, []string{"READ on topic p.requests.interactive", "READ on topic p.requests.batch", "READ on group switchboard-router",
			"WRITE on topic p.results", "WRITE on topic p.deadletter", "WRITE on topic p.models", "WRITE on topic p.status", "READ on topic p.history", "WRITE on topic p.history", "WRITE on transactional-id tx-1"}},
		{RoleEgress, Params{NoConsole: true}, []string{"READ on topic p.results"}},
		{RoleEgress, Params{Webhooks: true, NoConsole: true}, []string{"READ on topic p.results", "READ on group switchboard-egress-webhooks", "WRITE on topic p.deadletter"}},
		{RoleEgress, Params{}, []string{"READ on topic p.results", "DESCRIBE on topic p.requests.interactive", "DESCRIBE on topic p.requests.batch",
			"READ on topic p.deadletter", "DESCRIBE on group switchboard-router", "READ on topic p.status"}},
		{RoleRedrive, Params{}, []string{"READ on topic p.deadletter", "READ on group switchboard-redrive", "WRITE on topic p.requests.interactive", "WRITE on topic p.requests.batch"}},
	} {
		t.Run(tc.role, func(t *testing.T) {
			tc.p.Topics = spec(t)
			g, err := For(tc.role, tc.p)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, x := range g {
				got = append(got, x.String())
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
		})
	}
	if _, err := For("admin", Params{Topics: spec(t)}); err == nil || !strings.Contains(err.Error(), "unknown role") {
		t.Errorf("unknown role: err = %v", err)
	}
	g, err := For(RoleTopics, Params{Topics: spec(t)})
	if err != nil || len(g) != 3*len(spec(t).Topics) {
		t.Errorf("topics role: %d grants, %v; want Create, Alter and DescribeConfigs on each topic", len(g), err)
	}
}

// TestCommands: the kafka-acls form of the grants.
func TestCommands(t *testing.T) {
	g, err := For(RoleRouter, Params{Topics: spec(t), ExactlyOnce: true})
	if err != nil {
		t.Fatal(err)
	}
	cmds := Commands("User:router", g, "k:9093", "admin.properties")
	for _, want := range []string{
		"kafka-acls.sh --bootstrap-server k:9093 --command-config admin.properties --add --allow-principal User:router --operation Read --topic p.requests.interactive",
		"--operation Read --group switchboard-router",
		"--operation Write --transactional-id switchboard-router- --resource-pattern-type prefixed",
	} {
		if !strings.Contains(strings.Join(cmds, "\n"), want) {
			t.Errorf("commands lack %q:\n%s", want, strings.Join(cmds, "\n"))
		}
	}
	g, _ = For(RoleTopics, Params{Topics: spec(t)})
	if c := Commands("User:a", g[:3], "k", "c"); !strings.Contains(c[2], "--operation DescribeConfigs") {
		t.Errorf("DescribeConfigs spelled %q", c[2])
	}
}

// TestCheckWithoutAuthorizer: a cluster without ACLs (kfake, like a
// plaintext devbroker) allows everything, so Check passes.
func TestCheckWithoutAuthorizer(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, spec(t).Names()...))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, role := range []string{RoleIngress, RoleRouter, RoleEgress, RoleRedrive} {
		g, err := For(role, Params{Topics: spec(t), Webhooks: true})
		if err != nil {
			t.Fatal(err)
		}
		if err := Check(t.Context(), cl, g, "User:x"); err != nil {
			t.Errorf("%s: %v", role, err)
		}
	}
}

// TestApplyThenCheck: on a cluster with SASL and ACLs (kfake), a principal
// without grants fails Check naming every missing one; after Apply (as a
// super user) it passes; with one grant deleted, Check names exactly that
// one.
func TestApplyThenCheck(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, spec(t).Names()...), kfake.EnableSASL(), kfake.EnableACLs(),
		kfake.Superuser("SCRAM-SHA-256", "admin", "admin-pw"), kfake.User("SCRAM-SHA-256", "ingress", "ingress-pw"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	client := func(user, pw string) *kgo.Client {
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.SASL(scram.Auth{User: user, Pass: pw}.AsSha256Mechanism()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cl.Close)
		return cl
	}
	admin, ingress := kadm.NewClient(client("admin", "admin-pw")), client("ingress", "ingress-pw")
	grants, err := For(RoleIngress, Params{Topics: spec(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := Check(t.Context(), ingress, grants, "User:ingress"); !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "WRITE on topic p.requests.interactive") {
		t.Errorf("no grants: Check = %v, want ErrMissing naming WRITE on topic p.requests.interactive", err)
	}
	if err := Apply(t.Context(), admin, "User:ingress", grants); err != nil {
		t.Fatal(err)
	}
	if err := Check(t.Context(), ingress, grants, "User:ingress"); err != nil {
		t.Errorf("all grants: Check = %v, want nil", err)
	}
	if err := Delete(t.Context(), admin, "User:ingress", grants[1:2]); err != nil {
		t.Fatal(err)
	}
	err = Check(t.Context(), ingress, grants, "User:ingress")
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "User:ingress may not WRITE on topic p.requests.batch (") {
		t.Errorf("one grant deleted: Check = %v, want ErrMissing naming WRITE on topic p.requests.batch only", err)
	}
}

// TestDocsCommands: the kafka-acls lines of docs/OPERATIONS.md are what the
// code grants, with the default names.
func TestDocsCommands(t *testing.T) {
	b, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	docs := string(b)
	s, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		role, principal string
		p               Params
	}{
		{RoleIngress, "User:ingress", Params{}},
		{RoleRouter, "User:router", Params{ExactlyOnce: true}},
		{RoleEgress, "User:egress", Params{Webhooks: true}},
		{RoleRedrive, "User:redrive", Params{}},
	} {
		tc.p.Topics = s
		g, err := For(tc.role, tc.p)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range Commands(tc.principal, g, "B", "C") {
			c = strings.Replace(c, "--bootstrap-server B --command-config C", "$ADMIN", 1)
			if !strings.Contains(docs, c+"\n") {
				t.Errorf("docs/OPERATIONS.md lacks\n%s", c)
			}
		}
	}
}
