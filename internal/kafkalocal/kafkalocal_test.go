package kafkalocal

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestVersionFromPOM(t *testing.T) {
	got, err := Version("../../deploy/kafka-local/pom.xml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got, "4.") {
		t.Errorf("Version = %q, want a 4.x release", got)
	}
	bad := filepath.Join(t.TempDir(), "pom.xml")
	if err := os.WriteFile(bad, []byte("<project/>"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Version(bad); err == nil {
		t.Error("a POM without kafka.version: no error")
	}
}

// TestNodeProperties: each node is broker and controller on its own
// loopback ports, all three are voters, and the cluster settings the
// project relies on are there.
func TestNodeProperties(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{Dir: dir, POM: "../../deploy/kafka-local/pom.xml"})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Brokers(), "127.0.0.1:29092,127.0.0.1:29093,127.0.0.1:29094"; got != want {
		t.Errorf("Brokers = %s, want %s", got, want)
	}
	if err := c.writeProps(1); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.propsFile(1))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"process.roles=broker,controller", "node.id=2",
		"controller.quorum.voters=1@127.0.0.1:29192,2@127.0.0.1:29193,3@127.0.0.1:29194",
		"listeners=PLAINTEXT://127.0.0.1:29093,CONTROLLER://127.0.0.1:29193",
		"advertised.listeners=PLAINTEXT://127.0.0.1:29093",
		"default.replication.factor=3", "min.insync.replicas=2", "auto.create.topics.enable=false",
		"log.dirs=" + filepath.Join(c.nodeDir(1), "data"),
	} {
		if !strings.Contains(string(b), want+"\n") {
			t.Errorf("node2.properties lacks %q", want)
		}
	}
	if c.PID(1) != 0 {
		t.Error("PID of a node never started is not 0")
	}
}

// TestPIDIgnoresOtherProcesses: a PID file naming a live process that is
// not the node's JVM (here, the test itself) is not the node's: Down and
// Kill never signal it.
func TestPIDIgnoresOtherProcesses(t *testing.T) {
	c, err := New(Config{Dir: t.TempDir(), POM: "../../deploy/kafka-local/pom.xml"})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.pidFile(0), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatal(err)
	}
	if pid := c.PID(0); pid != 0 {
		t.Errorf("PID = %d for a process that is not node 1, want 0", pid)
	}
	if err := c.Kill(0); err == nil {
		t.Error("Kill of a node that is not running: no error")
	}
}

// TestSecureProperties: the secured cluster's nodes have SASL_SSL, mTLS,
// TLS between nodes and controllers, the StandardAuthorizer denying what no
// ACL allows, and their own ports; every principal gets a password, a token
// and a certificate, and Client/Env describe its connection.
func TestSecureProperties(t *testing.T) {
	dir := t.TempDir()
	c, err := New(Config{Dir: dir, POM: "../../deploy/kafka-local/pom.xml", Security: SecuritySASLSSL})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := c.Brokers(), "127.0.0.1:29292,127.0.0.1:29293,127.0.0.1:29294"; got != want {
		t.Errorf("Brokers = %s, want %s", got, want)
	}
	if err := c.makeSecrets(); err != nil {
		t.Fatal(err)
	}
	if err := c.writeProps(0); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(c.propsFile(0))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"listeners=SASL_SSL://127.0.0.1:29292,MTLS://127.0.0.1:29392,INTERNAL://127.0.0.1:29492,CONTROLLER://127.0.0.1:29592",
		"listener.security.protocol.map=SASL_SSL:SASL_SSL,MTLS:SSL,INTERNAL:SSL,CONTROLLER:SSL",
		"ssl.client.auth=required", "listener.name.sasl_ssl.ssl.client.auth=none",
		"listener.name.sasl_ssl.sasl.enabled.mechanisms=SCRAM-SHA-512,SCRAM-SHA-256,PLAIN,OAUTHBEARER",
		"authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
		"allow.everyone.if.no.acl.found=false", "super.users=User:broker;User:admin",
		"ssl.keystore.key=-----BEGIN PRIVATE KEY----- ",
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("node1.properties lacks %q", want)
		}
	}
	if fi, err := os.Stat(c.propsFile(0)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("node1.properties (PLAIN passwords, key) mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	for _, p := range Principals {
		for _, f := range []string{c.PasswordFile(p), c.TokenFile(p), filepath.Join(dir, "tls", p+".crt")} {
			if _, err := os.Stat(f); err != nil {
				t.Error(err)
			}
		}
	}
	for _, a := range Auths {
		k := c.Client(PrincipalIngress, a)
		if err := k.Load(); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	env := strings.Join(c.Env(PrincipalRouter, AuthMTLS), "\n")
	for _, want := range []string{"SWITCHBOARD_BROKERS=127.0.0.1:29392,", "SWITCHBOARD_KAFKA_TLS=on", "SWITCHBOARD_KAFKA_TLS_CERT_FILE=" + filepath.Join(dir, "tls", "router.crt")} {
		if !strings.Contains(env, want) {
			t.Errorf("mTLS env lacks %q:\n%s", want, env)
		}
	}
	pw, _ := os.ReadFile(c.PasswordFile(PrincipalRouter))
	if env := strings.Join(c.Env(PrincipalRouter, AuthSCRAM), "\n"); strings.Contains(env, strings.TrimSpace(string(pw))) {
		t.Error("the env holds the password, want only its file")
	}
	if tok := UnsecuredJWT("x", time.Hour); strings.Count(tok, ".") != 2 || !strings.HasSuffix(tok, ".") {
		t.Errorf("UnsecuredJWT = %q, want header.claims. (no signature)", tok)
	}
}
