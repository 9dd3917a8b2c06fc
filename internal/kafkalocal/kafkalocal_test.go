package kafkalocal

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
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
