package kafkalocal

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// MirrorConfig shapes a MirrorMaker 2 process (Apache Kafka's
// connect-mirror in dedicated mode) that copies topics one way, from a
// source cluster to a target cluster: the replication of the
// multi-region layouts (docs/MULTI-REGION.md).
type MirrorConfig struct {
	// Dir holds the jars (lib-<version>/), mm2.properties, the log and
	// the PID file. Required.
	Dir string
	// POM is deploy/kafka-mirror/pom.xml. Required.
	POM string
	// Source and Target name the clusters (aliases, e.g. "east" and
	// "west"); SourceBrokers and TargetBrokers are their bootstrap lists.
	Source, Target               string
	SourceBrokers, TargetBrokers string
	// Topics is the regular expression of the topics to mirror. They keep
	// their names on the target (IdentityReplicationPolicy), their
	// partition count and each record's partition, key, headers and
	// timestamp; offsets differ (MirrorMaker 2 produces anew).
	Topics string
	// Groups is the regular expression of the consumer groups whose
	// committed offsets are translated to the target (checkpoints, and
	// sync.group.offsets for groups not active there). Default none.
	Groups string
	// ReplicationFactor of the topics MirrorMaker 2 creates on either
	// cluster. Default 1.
	ReplicationFactor int
	// JavaOpts of the JVM. Default -Xms128m -Xmx384m -XX:+UseSerialGC.
	JavaOpts []string
	// Out receives progress lines. Default io.Discard.
	Out io.Writer
}

// Mirror is one MirrorMaker 2 process.
type Mirror struct {
	cfg     MirrorConfig
	version string
	lib     string
}

// NewMirror checks cfg and reads the connect-mirror version from the POM.
func NewMirror(cfg MirrorConfig) (*Mirror, error) {
	if cfg.Dir == "" || cfg.POM == "" {
		return nil, errors.New("kafkalocal: mirror Dir and POM are required")
	}
	if cfg.Source == "" || cfg.Target == "" || cfg.Source == cfg.Target {
		return nil, errors.New("kafkalocal: mirror needs two different cluster aliases")
	}
	if cfg.SourceBrokers == "" || cfg.TargetBrokers == "" || cfg.Topics == "" {
		return nil, errors.New("kafkalocal: mirror needs both clusters' brokers and a topics pattern")
	}
	if cfg.ReplicationFactor == 0 {
		cfg.ReplicationFactor = 1
	}
	if len(cfg.JavaOpts) == 0 {
		cfg.JavaOpts = []string{"-Xms128m", "-Xmx384m", "-XX:+UseSerialGC"}
	}
	if cfg.Out == nil {
		cfg.Out = io.Discard
	}
	v, err := Version(cfg.POM)
	if err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, err
	}
	cfg.Dir = dir
	return &Mirror{cfg: cfg, version: v, lib: filepath.Join(dir, "lib-"+v)}, nil
}

func (m *Mirror) propsFile() string { return filepath.Join(m.cfg.Dir, "mm2.properties") }
func (m *Mirror) pidFile() string   { return filepath.Join(m.cfg.Dir, "mm2.pid") }

// LogFile is the process's output.
func (m *Mirror) LogFile() string { return filepath.Join(m.cfg.Dir, "mm2.log") }

// properties is mm2.properties: one flow, source->target.
func (m *Mirror) properties() string {
	c := m.cfg
	groups := c.Groups
	if groups == "" {
		groups = "^$" // none
	}
	return fmt.Sprintf(`# Written by internal/kafkalocal (the multi-region drill); rewritten at every start.
clusters = %[1]s, %[2]s
%[1]s.bootstrap.servers = %[3]s
%[2]s.bootstrap.servers = %[4]s
%[1]s->%[2]s.enabled = true
%[2]s->%[1]s.enabled = false
%[1]s->%[2]s.topics = %[5]s
%[1]s->%[2]s.groups = %[6]s
# Same topic names in both regions: a standby's services need no other
# configuration than their brokers.
replication.policy.class = org.apache.kafka.connect.mirror.IdentityReplicationPolicy
# Only committed records cross: a result of an aborted exactly-once
# transaction never reaches the other region.
%[1]s.consumer.isolation.level = read_committed
# Results are small and latency matters more than batching here.
%[2]s.producer.linger.ms = 5
%[2]s.producer.acks = all
sync.topic.configs.enabled = true
sync.topic.acls.enabled = false
sync.group.offsets.enabled = true
sync.group.offsets.interval.seconds = 2
emit.checkpoints.interval.seconds = 2
emit.heartbeats.interval.seconds = 1
refresh.topics.interval.seconds = 2
refresh.groups.interval.seconds = 2
offset.lag.max = 10
offset-syncs.topic.location = target
tasks.max = 2
replication.factor = %[7]d
checkpoints.topic.replication.factor = %[7]d
heartbeats.topic.replication.factor = %[7]d
offset-syncs.topic.replication.factor = %[7]d
offset.storage.replication.factor = %[7]d
status.storage.replication.factor = %[7]d
config.storage.replication.factor = %[7]d
dedicated.mode.enable.internal.rest = false
`, c.Source, c.Target, c.SourceBrokers, c.TargetBrokers, c.Topics, groups, c.ReplicationFactor)
}

// Start fetches the jars once, writes mm2.properties and starts the JVM in
// a session of its own; it does not wait for the first records to cross.
func (m *Mirror) Start(ctx context.Context) error {
	if m.PID() > 0 {
		return errors.New("kafkalocal: mirror is running already")
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return errors.New("kafkalocal: java not found: MirrorMaker 2 needs a Java 17+ runtime")
	}
	if err := os.MkdirAll(m.cfg.Dir, 0o755); err != nil {
		return err
	}
	if err := fetchJars(ctx, m.cfg.POM, m.lib, "MirrorMaker 2 (connect-mirror "+m.version+")", m.cfg.Out); err != nil {
		return err
	}
	if err := os.WriteFile(m.propsFile(), []byte(m.properties()), 0o644); err != nil {
		return err
	}
	log4jFile := filepath.Join(m.cfg.Dir, "log4j2.properties")
	if err := os.WriteFile(log4jFile, []byte(log4j), 0o644); err != nil {
		return err
	}
	log, err := os.OpenFile(m.LogFile(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	args := append(append([]string{}, m.cfg.JavaOpts...), "-Dlog4j2.configurationFile="+log4jFile,
		"-cp", filepath.Join(m.lib, "*"), "org.apache.kafka.connect.mirror.MirrorMaker", m.propsFile())
	cmd := exec.Command(java, args...) //nolint:noctx // the process outlives this call; Stop ends it by PID
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kafkalocal: start MirrorMaker 2: %w", err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(m.pidFile(), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	go func() { _ = cmd.Wait() }()
	fmt.Fprintf(m.cfg.Out, "MirrorMaker 2 %s: pid %d, %s -> %s, log %s\n", m.version, pid, m.cfg.Source, m.cfg.Target, m.LogFile())
	return nil
}

// PID is the running MirrorMaker 2's PID (by its PID file, checked to be
// this mirror's JVM), else 0.
func (m *Mirror) PID() int { return livePID(m.pidFile(), m.propsFile()) }

// Stop ends the process: SIGTERM, then SIGKILL after timeout.
func (m *Mirror) Stop(timeout time.Duration) error {
	pid := m.PID()
	if pid == 0 {
		return nil
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for m.PID() > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if m.PID() > 0 {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		for i := 0; i < 100 && m.PID() > 0; i++ {
			time.Sleep(100 * time.Millisecond)
		}
	}
	if m.PID() > 0 {
		return fmt.Errorf("kafkalocal: MirrorMaker 2 (pid %d) still running", pid)
	}
	os.Remove(m.pidFile())
	return nil
}
