package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// TestMain removes the binaries the tests built.
func TestMain(m *testing.M) {
	code := m.Run()
	if bins != nil {
		os.RemoveAll(filepath.Dir(bins["ingress"]))
	}
	os.Exit(code)
}

// compose is the part of docker-compose.yml the tests read.
type compose struct {
	Services map[string]service `yaml:"services"`
	Volumes  map[string]any     `yaml:"volumes"`
}

type service struct {
	Image         string                            `yaml:"image"`
	Build         *struct{ Context, Target string } `yaml:"build"`
	Command       []string                          `yaml:"command"`
	Environment   map[string]string                 `yaml:"environment"`
	Ports         []string                          `yaml:"ports"`
	Volumes       []string                          `yaml:"volumes"`
	ContainerName string                            `yaml:"container_name"`
	Hostname      string                            `yaml:"hostname"`
	DependsOn     map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func loadCompose(t *testing.T) compose {
	t.Helper()
	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var c compose
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("docker-compose.yml: %v", err)
	}
	return c
}

// binaries maps compose services to the binaries they run (apptest names).
var binaries = map[string]string{
	"topics":        "topics",
	"modelsim":      "modelsim",
	"ingress":       "ingress",
	"router-worker": "router-worker",
	"egress":        "egress",
	"redrive":       "redrive",
}

// flagsOf returns the flags a binary accepts, read from its -h usage, with
// their defaults ("" when the usage shows none).
func flagsOf(t *testing.T, path string) map[string]string {
	t.Helper()
	out, _ := exec.Command(path, "-h").CombinedOutput() // exit status 0 or 2 by binary
	flags := map[string]string{}
	usage := regexp.MustCompile(`(?m)^  -([a-z0-9-]+)[^\n]*\n((?:    \t[^\n]*(?:\n|$))*)`)
	def := regexp.MustCompile(`\(default "?([^")]*)"?\)\s*$`)
	for _, m := range usage.FindAllStringSubmatch(string(out), -1) {
		flags[m[1]] = ""
		if strings.Contains(m[2], "deprecated: use --") {
			continue // an old name of another flag: the command sets that one
		}
		if d := def.FindStringSubmatch(strings.TrimSpace(m[2])); d != nil {
			flags[m[1]] = d[1]
		}
	}
	if len(flags) == 0 {
		t.Fatalf("%s -h listed no flags:\n%s", path, out)
	}
	return flags
}

var bins map[string]string

func buildOnce(t *testing.T) map[string]string {
	t.Helper()
	if bins != nil {
		return bins
	}
	dir, err := os.MkdirTemp("", "switchboard-deploy-")
	if err != nil {
		t.Fatal(err)
	}
	bins, err = apptest.Build(dir, "devbroker", "modelsim", "topics", "ingress", "router-worker", "egress", "redrive")
	if err != nil {
		t.Fatal(err)
	}
	return bins
}

func TestComposeKafkaIsAThreeBrokerKRaftCluster(t *testing.T) {
	c := loadCompose(t)
	voters := map[string]bool{}
	clusterIDs := map[string]bool{}
	for n := 1; n <= 3; n++ {
		name := fmt.Sprintf("kafka-%d", n)
		s, ok := c.Services[name]
		if !ok {
			t.Fatalf("service %s missing", name)
		}
		if !strings.HasPrefix(s.Image, "apache/kafka:") {
			t.Errorf("%s image = %q, want apache/kafka", name, s.Image)
		}
		env := s.Environment
		if env["KAFKA_PROCESS_ROLES"] != "broker,controller" {
			t.Errorf("%s KAFKA_PROCESS_ROLES = %q, want broker,controller (KRaft)", name, env["KAFKA_PROCESS_ROLES"])
		}
		if env["KAFKA_NODE_ID"] != fmt.Sprint(n) {
			t.Errorf("%s KAFKA_NODE_ID = %q, want %d", name, env["KAFKA_NODE_ID"], n)
		}
		if !strings.Contains(env["KAFKA_ADVERTISED_LISTENERS"], "PLAINTEXT://"+name+":9092") {
			t.Errorf("%s advertises %q, want PLAINTEXT://%s:9092", name, env["KAFKA_ADVERTISED_LISTENERS"], name)
		}
		if env["KAFKA_MIN_INSYNC_REPLICAS"] != "2" || env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] != "3" {
			t.Errorf("%s: min ISR %q, offsets RF %q; want 2 and 3", name, env["KAFKA_MIN_INSYNC_REPLICAS"], env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"])
		}
		clusterIDs[env["CLUSTER_ID"]] = true
		voters[env["KAFKA_CONTROLLER_QUORUM_VOTERS"]] = true
	}
	if want := "1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"; len(voters) != 1 || !voters[want] {
		t.Errorf("quorum voters = %v, want %q on every broker", voters, want)
	}
	if len(clusterIDs) != 1 || clusterIDs[""] {
		t.Errorf("cluster IDs = %v, want one shared non-empty ID", clusterIDs)
	}
}

func TestComposeServices(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	c := loadCompose(t)
	bin := buildOnce(t)
	stages := dockerStages(t)
	for _, want := range []string{"topics", "modelsim", "ingress", "router-worker", "egress", "prometheus", "grafana"} {
		if _, ok := c.Services[want]; !ok {
			t.Errorf("service %s missing", want)
		}
	}
	for name, s := range c.Services {
		for dep := range s.DependsOn {
			if _, ok := c.Services[dep]; !ok {
				t.Errorf("%s depends on unknown service %s", name, dep)
			}
		}
		for _, v := range s.Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(filepath.Join("..", src)); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			} else if _, ok := c.Volumes[src]; !ok {
				t.Errorf("%s uses volume %s, not declared", name, src)
			}
		}
	}
	for name, binName := range binaries {
		s := c.Services[name]
		if s.Build == nil || !stages[s.Build.Target] {
			t.Errorf("%s builds target %v, not a stage of the Dockerfile (%v)", name, s.Build, stages)
		}
		flags := flagsOf(t, bin[binName])
		for _, arg := range s.Command {
			if f, ok := strings.CutPrefix(arg, "--"); ok {
				f, _, _ = strings.Cut(f, "=")
				if _, ok := flags[f]; !ok {
					t.Errorf("%s: command uses --%s, which %s does not have", name, f, binName)
				}
			}
		}
		// Every listener, including those left at a loopback default
		// (ingress's --grpc-addr), must listen on all interfaces.
		for f, def := range flags {
			if !strings.HasSuffix(f, "addr") {
				continue
			}
			addr := flagValue(s.Command, f)
			if addr == "" {
				addr = def
			}
			if _, _, err := net.SplitHostPort(addr); err != nil {
				continue // not a listen address (e.g. --max-conns-per-addr)
			}
			if !strings.HasPrefix(addr, "0.0.0.0:") {
				t.Errorf("%s: --%s listens on %q: unreachable from other containers and the host", name, f, addr)
			}
			if _, port, ok := strings.Cut(addr, "0.0.0.0:"); ok && (name == "ingress" || name == "egress") && (f == "addr" || f == "grpc-addr") &&
				!slices.Contains(s.Ports, "127.0.0.1:"+port+":"+port) {
				t.Errorf("%s: --%s port %s is not mapped to the host (ports %v)", name, f, port, s.Ports)
			}
		}
		if name == "ingress" || name == "egress" || name == "router-worker" {
			if flagValue(s.Command, "admin-addr") == "" {
				t.Errorf("%s has no --admin-addr on 0.0.0.0: Prometheus cannot scrape it", name)
			}
		}
		if brokers := s.Environment["SWITCHBOARD_BROKERS"] + flagValue(s.Command, "brokers"); brokers != "" {
			for b := range strings.SplitSeq(brokers, ",") {
				host, port, err := net.SplitHostPort(b)
				if err != nil || port != "9092" {
					t.Errorf("%s: broker %q, want kafka-N:9092", name, b)
				} else if _, ok := c.Services[host]; !ok {
					t.Errorf("%s: broker host %s is not a service", name, host)
				}
			}
		}
		if name != "topics" && name != "modelsim" && s.DependsOn["topics"].Condition != "service_completed_successfully" {
			t.Errorf("%s does not wait for the topics job to succeed", name)
		}
	}
	checkHealthchecks(t, c, bin)
	rw := c.Services["router-worker"]
	if rw.ContainerName != "" || len(rw.Ports) > 0 {
		t.Errorf("router-worker has container_name %q and ports %v: docker compose --scale needs neither", rw.ContainerName, rw.Ports)
	}
	if !strings.Contains(rw.Environment["SWITCHBOARD_MODELSIM_URL"], "modelsim:8090") {
		t.Errorf("router-worker SWITCHBOARD_MODELSIM_URL = %q, want the modelsim service", rw.Environment["SWITCHBOARD_MODELSIM_URL"])
	}
}

// checkHealthchecks: every long-running service probes itself by running
// its own binary's healthcheck subcommand (the images have no shell) on
// the /readyz of its admin listener (modelsim: of its --addr), and that
// subcommand works.
func checkHealthchecks(t *testing.T, c compose, bin map[string]string) {
	t.Helper()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ready\n") }))
	defer ok.Close()
	for name, listener := range map[string]string{"ingress": "admin-addr", "router-worker": "admin-addr", "egress": "admin-addr", "modelsim": "addr"} {
		const path = "/readyz"
		s := c.Services[name]
		_, port, _ := strings.Cut(flagValue(s.Command, listener), ":")
		want := []string{"CMD", "/usr/local/bin/" + binaries[name], "healthcheck", "http://127.0.0.1:" + port + path}
		if s.Healthcheck == nil || !slices.Equal(s.Healthcheck.Test, want) {
			var got []string
			if s.Healthcheck != nil {
				got = s.Healthcheck.Test
			}
			t.Errorf("%s healthcheck test %q, want %q", name, got, want)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		out, err := exec.CommandContext(ctx, bin[binaries[name]], "healthcheck", ok.URL+path).CombinedOutput()
		cancel()
		if err != nil || !strings.Contains(string(out), "healthy") {
			t.Errorf("%s healthcheck %s: %v: %s", binaries[name], ok.URL+path, err, out)
		}
		ctx, cancel = context.WithTimeout(t.Context(), 10*time.Second)
		out, err = exec.CommandContext(ctx, bin[binaries[name]], "healthcheck", "http://127.0.0.1:1"+path).CombinedOutput()
		cancel()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "unhealthy") {
			t.Errorf("%s healthcheck of a closed port: %v: %s; want exit status 1, unhealthy", binaries[name], err, out)
		}
	}
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
	}
	return ""
}

// dockerStages returns the stage names of the Dockerfile and checks that
// the images are small and static.
func dockerStages(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	stages := map[string]bool{}
	from := regexp.MustCompile(`(?m)^FROM\s+(\S+)\s+AS\s+(\S+)`)
	for _, m := range from.FindAllStringSubmatch(string(b), -1) {
		image, stage := m[1], m[2]
		stages[stage] = true
		if stage != "build" && !strings.HasPrefix(image, "gcr.io/distroless/static") && image != "scratch" {
			t.Errorf("stage %s is FROM %s, want distroless/static or scratch", stage, image)
		}
		if stage != "build" && !regexp.MustCompile(`COPY --from=build /out/`+regexp.QuoteMeta(stage)+` `).Match(b) {
			t.Errorf("stage %s does not copy /out/%s", stage, stage)
		}
	}
	if !strings.Contains(string(b), "CGO_ENABLED=0") {
		t.Error("Dockerfile does not build with CGO_ENABLED=0 (static binaries)")
	}
	build := regexp.MustCompile(`go build [^\n]*-o /out/ \\\n\s+([^\n]+)`).FindStringSubmatch(string(b))
	if build == nil {
		t.Fatal("no go build -o /out/ line in the Dockerfile")
	}
	for pkg := range strings.FieldsSeq(build[1]) {
		if _, err := os.Stat(filepath.Join("..", pkg, "main.go")); err != nil {
			t.Errorf("Dockerfile builds %s: %v", pkg, err)
		}
		if name := filepath.Base(pkg); !stages[name] && !slices.Contains([]string{"devbroker"}, name) {
			t.Errorf("binary %s is built but has no image stage", name)
		}
	}
	return stages
}

// TestComposeConfig runs docker-compose's own validation when it is
// installed (.ci/run installs Debian's docker-compose; no Docker engine is
// needed for `config`).
func TestComposeConfig(t *testing.T) {
	path, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Skip("docker-compose is not installed (apt-get install docker-compose); the compose file was only checked by the other tests")
	}
	cmd := exec.Command(path, "-f", "../docker-compose.yml", "config", "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}
