// Package kafkalocal runs a local Apache Kafka cluster without Docker: three
// KRaft nodes, each broker and controller, started from Apache Kafka's own
// jars (fetched once from Maven Central with deploy/kafka-local/pom.xml and
// cached under the data directory), on 127.0.0.1:29092-29094. It is the
// reference broker for `make run KAFKA=apache` and `make test-kafka`
// (devbroker, franz-go's kfake, stays the embedded default).
//
// With Security "sasl_ssl" (make kafka-up KAFKA_SECURITY=sasl_ssl) the
// cluster is secured instead, on ports of its own so both can run at once
// (see secure.go): SASL_SSL client listeners (SCRAM-SHA-512, PLAIN,
// OAUTHBEARER) on 127.0.0.1:29292-29294, mTLS listeners on 29392-29394,
// TLS with client certificates between the nodes, the StandardAuthorizer
// with allow.everyone.if.no.acl.found=false, and a client env file per
// principal in the data directory.
//
// The nodes are separate JVMs that outlive the program that started them:
// each writes its PID to <dir>/nodeN.pid and its log to <dir>/nodeN.log, and
// Down stops exactly those PIDs (after checking that each still is that
// node's JVM), never anything found by name.
package kafkalocal

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// ClusterID is the fixed KRaft cluster ID every node is formatted with (the
// same as docker-compose.yml's).
const ClusterID = "4L6g3nShT-eMCtK--X86sw"

// Config shapes a local cluster. The zero value, with POM set, is the
// project's cluster: three nodes on 127.0.0.1:29092-29094 (controllers on
// 29192-29194), data in data/kafka.
type Config struct {
	// Dir holds the jars (lib-<version>/), each node's data, properties,
	// log and PID file. Default data/kafka.
	Dir string
	// POM is deploy/kafka-local/pom.xml, whose kafka.version property is
	// the project's one Kafka version. Required.
	POM string
	// Lib is the jars' directory. Default Dir/lib-<version>; clusters with
	// other Dirs (the multi-region drill's) share the project's.
	Lib string
	// Ports are the client listeners, one node each. Default 29092-29094.
	Ports []int
	// ControllerPorts are the KRaft controller listeners, as Ports.
	// Default 29192-29194.
	ControllerPorts []int
	// JavaOpts are the JVM options of each node. Default
	// -Xms256m -Xmx512m -XX:+UseSerialGC (three nodes and the services fit
	// on 2 cores).
	JavaOpts []string
	// Security is "" (or SecurityPlaintext) for the plaintext cluster, or
	// SecuritySASLSSL for the secured one, whose nodes live in
	// Dir/sasl_ssl (the jars are shared) and whose certificates, secrets and
	// client env files are in Dir/tls, Dir/secrets and Dir.
	Security string
	// PortOffset is added to every default port, for a second checkout's
	// cluster on the same machine (make kafka-up KAFKA_PORT_OFFSET=1000).
	PortOffset int
	// ClusterID is the KRaft cluster ID the nodes are formatted with.
	// Default ClusterID; a second cluster on the same machine (another
	// region in the multi-region drill) needs its own.
	ClusterID string
	// ReadyTimeout bounds the wait for the cluster to answer. Default 2m.
	ReadyTimeout time.Duration
	// Out receives progress lines. Default io.Discard.
	Out io.Writer
}

func (c *Config) defaults() error {
	if c.POM == "" {
		return errors.New("kafkalocal: POM is required")
	}
	if c.Dir == "" {
		c.Dir = filepath.Join("data", "kafka")
	}
	base, ctrl := 29092, 29192
	switch c.Security {
	case "", SecurityPlaintext:
		c.Security = SecurityPlaintext
	case SecuritySASLSSL:
		base, ctrl = securePorts, securePorts+300
	default:
		return fmt.Errorf("kafkalocal: security %q: want %s or %s", c.Security, SecurityPlaintext, SecuritySASLSSL)
	}
	if len(c.Ports) == 0 {
		c.Ports = []int{base + c.PortOffset, base + 1 + c.PortOffset, base + 2 + c.PortOffset}
	}
	if len(c.ControllerPorts) == 0 {
		c.ControllerPorts = []int{ctrl + c.PortOffset, ctrl + 1 + c.PortOffset, ctrl + 2 + c.PortOffset}
	}
	if len(c.Ports) != len(c.ControllerPorts) {
		return errors.New("kafkalocal: as many controller ports as client ports")
	}
	if len(c.JavaOpts) == 0 {
		c.JavaOpts = []string{"-Xms256m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:MaxDirectMemorySize=256m"}
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 2 * time.Minute
	}
	if c.ClusterID == "" {
		c.ClusterID = ClusterID
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	return nil
}

// Cluster is a local cluster's layout on disk.
type Cluster struct {
	cfg     Config
	version string
	lib     string
	root    string // the nodes' files: Dir, or Dir/sasl_ssl
}

// New checks cfg and reads the Kafka version from the POM.
func New(cfg Config) (*Cluster, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
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
	c := &Cluster{cfg: cfg, version: v, lib: filepath.Join(dir, "lib-"+v), root: dir}
	if cfg.Lib != "" {
		if c.lib, err = filepath.Abs(cfg.Lib); err != nil {
			return nil, err
		}
	}
	if c.Secured() {
		c.root = filepath.Join(dir, SecuritySASLSSL)
	}
	return c, nil
}

var versionRE = regexp.MustCompile(`<kafka\.version>([^<]+)</kafka\.version>`)

// Version returns the kafka.version property of pom.
func Version(pom string) (string, error) {
	b, err := os.ReadFile(pom)
	if err != nil {
		return "", fmt.Errorf("kafkalocal: %w", err)
	}
	m := versionRE.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("kafkalocal: no <kafka.version> in %s", pom)
	}
	return string(m[1]), nil
}

// Version is the cluster's Kafka version.
func (c *Cluster) Version() string { return c.version }

// Lib is the directory of the cluster's jars.
func (c *Cluster) Lib() string { return c.lib }

// Brokers returns the client addresses, comma-separated (of the SASL_SSL
// listeners when the cluster is secured).
func (c *Cluster) Brokers() string { return joinPorts(c.cfg.Ports, 0) }

func joinPorts(ports []int, offset int) string {
	var b []string
	for _, p := range ports {
		b = append(b, "127.0.0.1:"+strconv.Itoa(p+offset))
	}
	return strings.Join(b, ",")
}

// Secured reports whether the cluster is the SASL_SSL one.
func (c *Cluster) Secured() bool { return c.cfg.Security == SecuritySASLSSL }

// Dir is the data directory (the jars, and for a secured cluster its tls
// and secrets directories and client env files).
func (c *Cluster) Dir() string { return c.cfg.Dir }

// Nodes is the number of nodes.
func (c *Cluster) Nodes() int { return len(c.cfg.Ports) }

func (c *Cluster) nodeDir(i int) string { return filepath.Join(c.root, fmt.Sprintf("node%d", i+1)) }
func (c *Cluster) pidFile(i int) string {
	return filepath.Join(c.root, fmt.Sprintf("node%d.pid", i+1))
}
func (c *Cluster) logFile(i int) string {
	return filepath.Join(c.root, fmt.Sprintf("node%d.log", i+1))
}
func (c *Cluster) propsFile(i int) string {
	return filepath.Join(c.root, fmt.Sprintf("node%d.properties", i+1))
}

// Up fetches the jars when they are not cached, formats the nodes' storage
// when it is new, starts every node that is not running and waits until the
// cluster answers with all its brokers and a controller. Nodes already
// running (by their PID files) are left as they are.
func (c *Cluster) Up(ctx context.Context) error {
	java, err := exec.LookPath("java")
	if err != nil {
		return errors.New("kafkalocal: java not found: Apache Kafka needs a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
	}
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		return err
	}
	if err := c.fetch(ctx); err != nil {
		return err
	}
	if c.Secured() {
		if err := c.makeSecrets(); err != nil {
			return err
		}
	}
	for i := range c.Nodes() {
		if c.PID(i) > 0 {
			continue
		}
		if err := c.checkPortsFree(i); err != nil {
			return err
		}
		if err := c.writeProps(i); err != nil {
			return err
		}
		if err := c.format(ctx, java, i); err != nil {
			return err
		}
	}
	for i := range c.Nodes() {
		if c.PID(i) > 0 {
			continue
		}
		if err := c.StartNode(i); err != nil {
			return err
		}
	}
	if err := c.WaitReady(ctx, c.Nodes()); err != nil {
		return err
	}
	if c.Secured() {
		return c.setupPrincipals(ctx)
	}
	return nil
}

// fetch copies kafka_2.13 and its runtime dependencies into the lib
// directory with Maven, once: a complete lib directory is never fetched
// again, so later runs need no network.
func (c *Cluster) fetch(ctx context.Context) error {
	return fetchJars(ctx, c.cfg.POM, c.lib, "Apache Kafka "+c.version, c.cfg.Out)
}

// fetchJars copies pom's dependencies (runtime scope) into lib with Maven,
// unless lib is complete already.
func fetchJars(ctx context.Context, pom, lib, what string, out io.Writer) error {
	done := filepath.Join(lib, ".complete")
	if _, err := os.Stat(done); err == nil {
		return nil
	}
	mvn, err := exec.LookPath("mvn")
	if err != nil {
		return errors.New("kafkalocal: mvn not found: the Kafka jars are fetched from Maven Central with Maven (Debian: apt-get install maven)")
	}
	fmt.Fprintf(out, "fetching %s jars with Maven into %s\n", what, lib)
	tmp := lib + ".partial"
	os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, mvn, "-B", "-q", "-ntp", "-f", pom,
		"org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
		"-DincludeScope=runtime", "-DoutputDirectory="+tmp)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kafkalocal: mvn copy-dependencies (%s): %w\n%s", pom, err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), []byte(what+"\n"), 0o644); err != nil {
		return err
	}
	os.RemoveAll(lib)
	return os.Rename(tmp, lib)
}

func (c *Cluster) checkPortsFree(i int) error {
	for _, p := range c.nodePorts(i) {
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p)) //nolint:noctx // a momentary bind to see whether the port is free
		if err != nil {
			return fmt.Errorf("kafkalocal: node %d: port %d is taken by a process this cluster did not start: %w", i+1, p, err)
		}
		l.Close()
	}
	return nil
}

// nodePorts are node i's listening ports.
func (c *Cluster) nodePorts(i int) []int {
	ports := []int{c.cfg.Ports[i], c.cfg.ControllerPorts[i]}
	if c.Secured() {
		ports = append(ports, c.cfg.Ports[i]+mtlsOffset, c.cfg.Ports[i]+internalOffset)
	}
	return ports
}

// writeProps writes node i's server properties.
func (c *Cluster) writeProps(i int) error {
	if err := os.MkdirAll(c.root, 0o755); err != nil {
		return err
	}
	if c.Secured() {
		return c.writeSecureProps(i)
	}
	var voters []string
	for j, p := range c.cfg.ControllerPorts {
		voters = append(voters, fmt.Sprintf("%d@127.0.0.1:%d", j+1, p))
	}
	props := fmt.Sprintf(`# Written by internal/kafkalocal (make kafka-up); rewritten at every start.
process.roles=broker,controller
node.id=%d
controller.quorum.voters=%s
listeners=PLAINTEXT://127.0.0.1:%d,CONTROLLER://127.0.0.1:%d
advertised.listeners=PLAINTEXT://127.0.0.1:%d
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
log.dirs=%s
default.replication.factor=%[7]d
min.insync.replicas=%[8]d
offsets.topic.replication.factor=%[7]d
transaction.state.log.replication.factor=%[7]d
transaction.state.log.min.isr=%[8]d
auto.create.topics.enable=false
# A local cluster: no wait for more members before the first rebalance, and
# session timeouts down to 1s allowed so crash tests do not wait 45s.
group.initial.rebalance.delay.ms=0
group.min.session.timeout.ms=1000
group.consumer.min.session.timeout.ms=1000
group.consumer.min.heartbeat.interval.ms=500
# Small: three nodes share 2 cores with the services.
num.network.threads=2
num.io.threads=2
background.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=8388608
`, i+1, strings.Join(voters, ","), c.cfg.Ports[i], c.cfg.ControllerPorts[i], c.cfg.Ports[i], filepath.Join(c.nodeDir(i), "data"),
		c.replicas(), c.minISR())
	return os.WriteFile(c.propsFile(i), []byte(props), 0o644)
}

// format formats node i's storage with the fixed cluster ID unless it is
// formatted already (a restart keeps the data).
func (c *Cluster) format(ctx context.Context, java string, i int) error {
	if _, err := os.Stat(filepath.Join(c.nodeDir(i), "data", "meta.properties")); err == nil {
		return nil
	}
	cmd := exec.CommandContext(ctx, java, append(c.javaArgs(), "kafka.tools.StorageTool", "format",
		"-t", c.cfg.ClusterID, "-c", c.propsFile(i), "--ignore-formatted")...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("kafkalocal: format node %d: %w\n%s", i+1, err, out)
	}
	return nil
}

// replicas is the replication factor of the cluster's topics: 3, or the
// node count of a smaller cluster.
func (c *Cluster) replicas() int { return min(3, c.Nodes()) }

// minISR is the cluster's min.insync.replicas: 2 with three nodes, 1 on a
// single node.
func (c *Cluster) minISR() int { return max(1, c.replicas()-1) }

func (c *Cluster) javaArgs() []string {
	return append(append([]string{}, c.cfg.JavaOpts...),
		"-Dlog4j2.configurationFile="+c.log4jFile(), "-cp", filepath.Join(c.lib, "*"))
}

func (c *Cluster) log4jFile() string { return filepath.Join(c.root, "log4j2.properties") }

const log4j = `# Written by internal/kafkalocal: every node logs INFO to its stdout (nodeN.log).
status = warn
appender.out.type = Console
appender.out.name = out
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.out.ref = out
logger.request.name = kafka.request.logger
logger.request.level = warn
logger.state.name = state.change.logger
logger.state.level = warn
`

// StartNode starts node i as a JVM of its own session (so it outlives the
// caller and a Ctrl-C of the caller's terminal), its output appended to
// its log file, and records its PID. It does not wait for the node.
func (c *Cluster) StartNode(i int) error {
	java, err := exec.LookPath("java")
	if err != nil {
		return errors.New("kafkalocal: java not found: Apache Kafka needs a Java 17+ runtime (Debian: apt-get install openjdk-17-jre-headless)")
	}
	if err := os.WriteFile(c.log4jFile(), []byte(log4j), 0o644); err != nil {
		return err
	}
	log, err := os.OpenFile(c.logFile(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer log.Close()
	// Never cancelled: the node outlives this call (Down and Kill stop it
	// by PID).
	cmd := exec.Command(java, append(c.javaArgs(), "kafka.Kafka", c.propsFile(i))...) //nolint:noctx // see above
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("kafkalocal: start node %d: %w", i+1, err)
	}
	pid := cmd.Process.Pid
	if err := os.WriteFile(c.pidFile(i), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		_ = cmd.Process.Kill()
		return err
	}
	// Reap the JVM if it ends while this process still runs (tests); when
	// this process ends first, init adopts it.
	go func() { _ = cmd.Wait() }()
	fmt.Fprintf(c.cfg.Out, "node %d: pid %d, 127.0.0.1:%d, log %s\n", i+1, pid, c.cfg.Ports[i], c.logFile(i))
	return nil
}

// PID returns node i's PID when its PID file names a live process that is
// this node's JVM, else 0.
func (c *Cluster) PID(i int) int { return livePID(c.pidFile(i), c.propsFile(i)) }

// livePID returns the PID in pidFile when it names a live process (not a
// zombie) whose command line contains marker, else 0.
func livePID(pidFile, marker string) int {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return 0
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(marker)) {
		return 0
	}
	if stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		s := string(stat)
		if f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:]); len(f) > 0 && f[0] == "Z" {
			return 0
		}
	}
	return pid
}

// Kill ends node i with SIGKILL (a crash) and waits until it is gone.
func (c *Cluster) Kill(i int) error {
	pid := c.PID(i)
	if pid == 0 {
		return fmt.Errorf("kafkalocal: node %d is not running", i+1)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return err
	}
	return c.waitGone(i, 30*time.Second)
}

func (c *Cluster) waitGone(i int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for c.PID(i) > 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("kafkalocal: node %d still running after %v", i+1, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// Down stops every running node: SIGTERM to all (a controlled shutdown),
// then SIGKILL to any still running after timeout. It stops only the PIDs
// in the PID files that are still this cluster's JVMs.
func (c *Cluster) Down(timeout time.Duration) error {
	pids := map[int]int{}
	for i := range c.Nodes() {
		if pid := c.PID(i); pid > 0 {
			pids[i] = pid
			_ = syscall.Kill(pid, syscall.SIGTERM)
			fmt.Fprintf(c.cfg.Out, "node %d: SIGTERM to pid %d\n", i+1, pid)
		}
	}
	var errs []error
	for i, pid := range pids {
		if err := c.waitGone(i, timeout); err != nil {
			fmt.Fprintf(c.cfg.Out, "node %d: SIGKILL to pid %d after %v\n", i+1, pid, timeout)
			_ = syscall.Kill(pid, syscall.SIGKILL)
			if err := c.waitGone(i, 10*time.Second); err != nil {
				errs = append(errs, err)
			}
		}
		os.Remove(c.pidFile(i))
	}
	return errors.Join(errs...)
}

// Running returns how many nodes run.
func (c *Cluster) Running() int {
	n := 0
	for i := range c.Nodes() {
		if c.PID(i) > 0 {
			n++
		}
	}
	return n
}

// WaitReady waits until the cluster's metadata lists at least brokers
// brokers and a controller, failing early when a node this cluster started
// has exited.
func (c *Cluster) WaitReady(ctx context.Context, brokers int) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.ReadyTimeout)
	defer cancel()
	return WaitCluster(ctx, c.Admin(), brokers, func() error {
		for i := range c.Nodes() {
			if c.PID(i) == 0 {
				return fmt.Errorf("node %d is not running; its log (%s) ends:\n%s", i+1, c.logFile(i), tailFile(c.logFile(i), 3000))
			}
		}
		return nil
	})
}

// WaitBrokers waits until the cluster at addrs (comma-separated) answers
// with at least n brokers and a controller, or ctx ends. alive, when not
// nil, is checked between tries; its error ends the wait.
func WaitBrokers(ctx context.Context, addrs string, n int, alive func() error) error {
	return WaitCluster(ctx, kafkaconf.Config{Brokers: strings.Split(addrs, ",")}, n, alive)
}

// WaitCluster is WaitBrokers for a cluster reached with kafka (TLS, SASL).
func WaitCluster(ctx context.Context, kafka kafkaconf.Config, n int, alive func() error) error {
	var last error
	for {
		if alive != nil {
			if err := alive(); err != nil {
				return fmt.Errorf("kafkalocal: %w", err)
			}
		}
		if last = CheckCluster(ctx, kafka, n); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kafkalocal: cluster at %s not ready: %w", strings.Join(kafka.Brokers, ","), last)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Check asks the cluster at addrs once for its metadata and reports
// whether it has at least n brokers and a controller.
func Check(ctx context.Context, addrs string, n int) error {
	return CheckCluster(ctx, kafkaconf.Config{Brokers: strings.Split(addrs, ",")}, n)
}

// CheckCluster is Check for a cluster reached with kafka (TLS, SASL).
func CheckCluster(ctx context.Context, kafka kafkaconf.Config, n int) error {
	cl, err := kgo.NewClient(append(kafka.Opts(nil), kgo.RetryTimeout(2*time.Second),
		kgo.DialTimeout(time.Second), kgo.RequestRetries(0))...)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	m, err := kadm.NewClient(cl).BrokerMetadata(ctx)
	if err != nil {
		return err
	}
	if len(m.Brokers) < n {
		return fmt.Errorf("%d of %d brokers registered", len(m.Brokers), n)
	}
	if m.Controller < 0 {
		return errors.New("no active controller")
	}
	return nil
}

func tailFile(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
