package deploy

import (
	"bytes"
	"errors"
	"io"
	"maps"
	"math"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/switchboard-llm/switchboard/internal/router"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// The Kubernetes example (deploy/kubernetes) is read with these structs:
// only the fields the checks need, so the checks say what must hold rather
// than mirror the Kubernetes API (whose Go types would be a large
// dependency for a few files).

type k8sObject struct {
	APIVersion string `yaml:"apiVersion"`
	Kind       string `yaml:"kind"`
	Metadata   struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Data       map[string]string `yaml:"data"`
	StringData map[string]string `yaml:"stringData"`
	Spec       k8sSpec           `yaml:"spec"`
	file       string
}

func (o k8sObject) String() string { return o.file + ": " + o.Kind + " " + o.Metadata.Name }

type k8sSpec struct {
	// Deployment, StatefulSet, Job
	Replicas    *int         `yaml:"replicas"`
	ServiceName string       `yaml:"serviceName"`
	Selector    yaml.Node    `yaml:"selector"` // matchLabels (workloads, PDBs) or a map (Services)
	Template    podTemplate  `yaml:"template"`
	ClusterIP   string       `yaml:"clusterIP"`
	Ports       []k8sSvcPort `yaml:"ports"`
	// PodDisruptionBudget
	MinAvailable   any `yaml:"minAvailable"`
	MaxUnavailable any `yaml:"maxUnavailable"`
	// KEDA ScaledObject
	ScaleTargetRef struct {
		APIVersion string `yaml:"apiVersion"`
		Kind       string `yaml:"kind"`
		Name       string `yaml:"name"`
	} `yaml:"scaleTargetRef"`
	MinReplicaCount *int          `yaml:"minReplicaCount"`
	MaxReplicaCount *int          `yaml:"maxReplicaCount"`
	Triggers        []kedaTrigger `yaml:"triggers"`
}

type k8sSvcPort struct {
	Name       string `yaml:"name"`
	Port       int    `yaml:"port"`
	TargetPort any    `yaml:"targetPort"`
}

type podTemplate struct {
	Metadata struct {
		Labels map[string]string `yaml:"labels"`
	} `yaml:"metadata"`
	Spec struct {
		Containers []container `yaml:"containers"`
		Volumes    []struct {
			Name      string `yaml:"name"`
			ConfigMap *struct {
				Name  string `yaml:"name"`
				Items []struct{ Key, Path string }
			} `yaml:"configMap"`
		} `yaml:"volumes"`
	} `yaml:"spec"`
}

type container struct {
	Name  string   `yaml:"name"`
	Image string   `yaml:"image"`
	Args  []string `yaml:"args"`
	Env   []struct {
		Name      string `yaml:"name"`
		Value     string `yaml:"value"`
		ValueFrom *struct {
			ConfigMapKeyRef *keyRef `yaml:"configMapKeyRef"`
			SecretKeyRef    *keyRef `yaml:"secretKeyRef"`
			FieldRef        *struct {
				FieldPath string `yaml:"fieldPath"`
			} `yaml:"fieldRef"`
		} `yaml:"valueFrom"`
	} `yaml:"env"`
	Ports []struct {
		Name          string `yaml:"name"`
		ContainerPort int    `yaml:"containerPort"`
	} `yaml:"ports"`
	ReadinessProbe *probe `yaml:"readinessProbe"`
	LivenessProbe  *probe `yaml:"livenessProbe"`
	Resources      struct {
		Requests map[string]string `yaml:"requests"`
		Limits   map[string]string `yaml:"limits"`
	} `yaml:"resources"`
	VolumeMounts []struct {
		Name      string `yaml:"name"`
		MountPath string `yaml:"mountPath"`
	} `yaml:"volumeMounts"`
}

type keyRef struct {
	Name     string `yaml:"name"`
	Key      string `yaml:"key"`
	Optional bool   `yaml:"optional"`
}

type probe struct {
	HTTPGet *struct {
		Path string `yaml:"path"`
		Port any    `yaml:"port"`
	} `yaml:"httpGet"`
}

type kedaTrigger struct {
	Type       string            `yaml:"type"`
	MetricType string            `yaml:"metricType"`
	Metadata   map[string]string `yaml:"metadata"`
}

const k8sDir = "kubernetes"

// loadK8s reads every document of every file kustomization.yaml lists, and
// checks that it lists every YAML file of the directory.
func loadK8s(t *testing.T) []k8sObject {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(k8sDir, "kustomization.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var kust struct {
		Kind      string   `yaml:"kind"`
		Resources []string `yaml:"resources"`
	}
	if err := yaml.Unmarshal(b, &kust); err != nil || kust.Kind != "Kustomization" {
		t.Fatalf("kustomization.yaml: kind %q, %v", kust.Kind, err)
	}
	files, _ := filepath.Glob(filepath.Join(k8sDir, "*.yaml"))
	for _, f := range files {
		if name := filepath.Base(f); name != "kustomization.yaml" && !slices.Contains(kust.Resources, name) {
			t.Errorf("%s is not in kustomization.yaml's resources", name)
		}
	}
	var objs []k8sObject
	for _, name := range kust.Resources {
		b, err := os.ReadFile(filepath.Join(k8sDir, name))
		if err != nil {
			t.Fatalf("kustomization.yaml lists %s: %v", name, err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(b))
		for {
			var o k8sObject
			err := dec.Decode(&o)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			o.file = name
			if o.APIVersion == "" || o.Kind == "" || o.Metadata.Name == "" {
				t.Errorf("%s: a document without apiVersion, kind or metadata.name: %+v", name, o)
			}
			objs = append(objs, o)
		}
	}
	return objs
}

func find(objs []k8sObject, kind, name string) *k8sObject {
	for i := range objs {
		if objs[i].Kind == kind && objs[i].Metadata.Name == name {
			return &objs[i]
		}
	}
	return nil
}

// matchLabels returns a selector's labels: spec.selector.matchLabels of a
// workload or PDB, spec.selector of a Service.
func matchLabels(t *testing.T, o k8sObject) map[string]string {
	t.Helper()
	var sel struct {
		MatchLabels map[string]string `yaml:"matchLabels"`
	}
	var flat map[string]string
	if o.Kind == "Service" {
		if err := o.Spec.Selector.Decode(&flat); err != nil {
			t.Errorf("%s: selector: %v", o, err)
		}
		return flat
	}
	if err := o.Spec.Selector.Decode(&sel); err != nil {
		t.Errorf("%s: selector: %v", o, err)
	}
	return sel.MatchLabels
}

// selects reports whether every label of sel is on labels.
func selects(sel, labels map[string]string) bool {
	if len(sel) == 0 {
		return false
	}
	for k, v := range sel {
		if labels[k] != v {
			return false
		}
	}
	return true
}

// k8sWorkloads are the services and how each runs.
var k8sWorkloads = map[string]string{"ingress": "Deployment", "egress": "Deployment", "router-worker": "StatefulSet"}

// TestKubernetesStructure checks the example without the binaries: every
// workload is selected by its PodDisruptionBudget and Service, has probes
// on its admin port, resources, config that exists; router-worker is a
// StatefulSet whose pod name is its static membership ID; the config files
// load with the services' own parsers.
func TestKubernetesStructure(t *testing.T) {
	objs := loadK8s(t)
	cm := find(objs, "ConfigMap", "switchboard-config")
	sec := find(objs, "Secret", "switchboard-secrets")
	if cm == nil || sec == nil {
		t.Fatal("no ConfigMap switchboard-config or Secret switchboard-secrets")
	}
	// backends.yaml loads in router-worker's environment (api_key_env
	// names a variable the pod sets).
	if rw := find(objs, "StatefulSet", "router-worker"); rw != nil {
		for _, e := range rw.Spec.Template.Spec.Containers[0].Env {
			t.Setenv(e.Name, "set-by-the-pod")
		}
	}
	if _, err := router.ParseBackends([]byte(cm.Data["backends.yaml"])); err != nil {
		t.Errorf("ConfigMap backends.yaml does not load in router-worker's environment: %v", err)
	}
	if _, err := tenant.Parse([]byte(cm.Data["tenants.yaml"])); err != nil {
		t.Errorf("ConfigMap tenants.yaml does not load: %v", err)
	}
	for _, b := range strings.Split(cm.Data["brokers"], ",") {
		if _, _, err := net.SplitHostPort(b); err != nil {
			t.Errorf("ConfigMap brokers %q: %v", cm.Data["brokers"], err)
		}
	}
	for name, kind := range k8sWorkloads {
		w := find(objs, kind, name)
		if w == nil {
			t.Errorf("no %s %s", kind, name)
			continue
		}
		checkWorkload(t, objs, *w, cm, sec)
	}
	rw := find(objs, "StatefulSet", "router-worker")
	if rw == nil {
		t.Fatal("router-worker is not a StatefulSet")
	}
	if svc := find(objs, "Service", rw.Spec.ServiceName); svc == nil || svc.Spec.ClusterIP != "None" {
		t.Errorf("router-worker's serviceName %q is not a headless Service", rw.Spec.ServiceName)
	}
	static := false
	for _, e := range rw.Spec.Template.Spec.Containers[0].Env {
		if e.Name == "SWITCHBOARD_INSTANCE_ID" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil && e.ValueFrom.FieldRef.FieldPath == "metadata.name" {
			static = true
		}
	}
	if !static {
		t.Error("router-worker's SWITCHBOARD_INSTANCE_ID is not its pod name (fieldRef metadata.name): no static membership")
	}
	if job := find(objs, "Job", "switchboard-topics"); job == nil || len(job.Spec.Template.Spec.Containers) != 1 {
		t.Error("no Job switchboard-topics with one container")
	}
}

// checkWorkload checks one Deployment or StatefulSet.
func checkWorkload(t *testing.T, objs []k8sObject, w k8sObject, cm, sec *k8sObject) {
	t.Helper()
	labels := w.Spec.Template.Metadata.Labels
	if !selects(matchLabels(t, w), labels) {
		t.Errorf("%s: selector %v does not match its pods' labels %v", w, matchLabels(t, w), labels)
	}
	if w.Spec.Replicas == nil || *w.Spec.Replicas < 1 {
		t.Errorf("%s: replicas not set", w)
	}
	if len(w.Spec.Template.Spec.Containers) != 1 {
		t.Fatalf("%s: want one container", w)
	}
	c := w.Spec.Template.Spec.Containers[0]
	if !strings.HasPrefix(c.Image, "switchboard/"+w.Metadata.Name+":") {
		t.Errorf("%s: image %q, want switchboard/%s:<tag> (the Dockerfile's stage)", w, c.Image, w.Metadata.Name)
	}
	ports := map[string]int{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	// Probes: readiness on /readyz, liveness on /healthz, both on the port
	// of --admin-addr, which listens on all interfaces.
	_, admin, err := net.SplitHostPort(flagValue(c.Args, "admin-addr"))
	if err != nil || !strings.HasPrefix(flagValue(c.Args, "admin-addr"), "0.0.0.0:") {
		t.Errorf("%s: --admin-addr %q, want 0.0.0.0:<port> (probes and Prometheus reach it from outside the pod)", w, flagValue(c.Args, "admin-addr"))
	}
	for _, pr := range []struct {
		kind, path string
		p          *probe
	}{{"readiness", "/readyz", c.ReadinessProbe}, {"liveness", "/healthz", c.LivenessProbe}} {
		if pr.p == nil || pr.p.HTTPGet == nil {
			t.Errorf("%s: no %s httpGet probe", w, pr.kind)
			continue
		}
		if pr.p.HTTPGet.Path != pr.path {
			t.Errorf("%s: %s probe path %q, want %s", w, pr.kind, pr.p.HTTPGet.Path, pr.path)
		}
		if got := resolvePort(pr.p.HTTPGet.Port, ports); strconv.Itoa(got) != admin {
			t.Errorf("%s: %s probe port %v (%d), want the --admin-addr port %s", w, pr.kind, pr.p.HTTPGet.Port, got, admin)
		}
	}
	// Every listener has its container port.
	for _, f := range []string{"addr", "grpc-addr", "admin-addr"} {
		if v := flagValue(c.Args, f); v != "" {
			_, p, _ := net.SplitHostPort(v)
			if !slices.ContainsFunc(c.Ports, func(cp struct {
				Name          string `yaml:"name"`
				ContainerPort int    `yaml:"containerPort"`
			}) bool {
				return strconv.Itoa(cp.ContainerPort) == p
			}) {
				t.Errorf("%s: --%s %s has no containerPort", w, f, v)
			}
		}
	}
	checkResources(t, w, c)
	// Config: env from keys that exist; files mounted where the flags say.
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			continue
		}
		if r := e.ValueFrom.ConfigMapKeyRef; r != nil && (r.Name != cm.Metadata.Name || cm.Data[r.Key] == "") {
			t.Errorf("%s: env %s from ConfigMap %s key %s, which does not exist", w, e.Name, r.Name, r.Key)
		}
		if r := e.ValueFrom.SecretKeyRef; r != nil && (r.Name != sec.Metadata.Name || sec.StringData[r.Key] == "") {
			t.Errorf("%s: env %s from Secret %s key %s, which does not exist", w, e.Name, r.Name, r.Key)
		}
	}
	for _, f := range []string{"tenants", "backends"} {
		if v := flagValue(c.Args, f); v != "" && !mounted(w, c, cm, v) {
			t.Errorf("%s: --%s %s is no key of the ConfigMap mounted there", w, f, v)
		}
	}
	// A PodDisruptionBudget and, with ports, a Service select the pods.
	var pdb, svc *k8sObject
	for i := range objs {
		o := objs[i]
		if (o.Kind == "PodDisruptionBudget" || o.Kind == "Service") && selects(matchLabels(t, o), labels) {
			if o.Kind == "Service" {
				svc = &objs[i]
			} else {
				pdb = &objs[i]
			}
		}
	}
	if pdb == nil {
		t.Errorf("%s: no PodDisruptionBudget selects its pods", w)
	} else if least, ok := pdb.Spec.MinAvailable.(int); ok && w.Spec.Replicas != nil && least >= *w.Spec.Replicas {
		t.Errorf("%s: PodDisruptionBudget minAvailable %d ≥ replicas %d: no node could ever be drained", w, least, *w.Spec.Replicas)
	} else if pdb.Spec.MinAvailable == nil && pdb.Spec.MaxUnavailable == nil {
		t.Errorf("%s: PodDisruptionBudget sets neither minAvailable nor maxUnavailable", w)
	}
	if svc == nil {
		t.Errorf("%s: no Service selects its pods", w)
		return
	}
	for _, p := range svc.Spec.Ports {
		if resolvePort(p.TargetPort, ports) == 0 {
			t.Errorf("%s: Service port %s targets %v, no port of the container", w, p.Name, p.TargetPort)
		}
	}
}

// resolvePort returns the container port a probe or Service names (by name
// or number), or 0.
func resolvePort(p any, ports map[string]int) int {
	switch v := p.(type) {
	case int:
		for _, n := range ports {
			if n == v {
				return v
			}
		}
	case string:
		return ports[v]
	}
	return 0
}

// mounted reports whether file is a key of the ConfigMap, mounted at its
// directory in the container.
func mounted(w k8sObject, c container, cm *k8sObject, file string) bool {
	for _, m := range c.VolumeMounts {
		for _, v := range w.Spec.Template.Spec.Volumes {
			if v.Name != m.Name || v.ConfigMap == nil || v.ConfigMap.Name != cm.Metadata.Name {
				continue
			}
			for _, it := range v.ConfigMap.Items {
				if path.Join(m.MountPath, it.Path) == file && cm.Data[it.Key] != "" {
					return true
				}
			}
		}
	}
	return false
}

// checkResources: CPU and memory requests and limits, requests ≤ limits.
func checkResources(t *testing.T, w k8sObject, c container) {
	t.Helper()
	for _, r := range []string{"cpu", "memory"} {
		req, lim := quantity(c.Resources.Requests[r]), quantity(c.Resources.Limits[r])
		if req <= 0 || lim <= 0 || req > lim {
			t.Errorf("%s: %s request %q and limit %q: want both, request ≤ limit", w, r, c.Resources.Requests[r], c.Resources.Limits[r])
		}
	}
}

// quantity reads the Kubernetes quantities the example uses (250m, 1,
// 128Mi, 1Gi); -1 for anything else.
func quantity(s string) float64 {
	m := regexp.MustCompile(`^([0-9.]+)(m|Ki|Mi|Gi)?$`).FindStringSubmatch(s)
	if m == nil {
		return -1
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return v * map[string]float64{"": 1, "m": 1e-3, "Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30}[m[2]]
}

// TestKubernetesKEDA checks the ScaledObjects: each scales a workload of
// the example; router-worker's scale on its group's lag on both requests
// topics, from the brokers the services use, up to at most the
// partitions; the workloads start within their ScaledObject's range.
func TestKubernetesKEDA(t *testing.T) {
	objs := loadK8s(t)
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cm := find(objs, "ConfigMap", "switchboard-config")
	for name, kind := range k8sWorkloads {
		so := find(objs, "ScaledObject", name)
		if so == nil {
			t.Errorf("no ScaledObject %s", name)
			continue
		}
		ref := so.Spec.ScaleTargetRef
		if ref.Kind == "" {
			ref.Kind = "Deployment" // KEDA's default
		}
		w := find(objs, ref.Kind, ref.Name)
		if w == nil || ref.Kind != kind {
			t.Errorf("ScaledObject %s scales %s %s: not the %s of the example", name, ref.Kind, ref.Name, kind)
			continue
		}
		lo, hi := so.Spec.MinReplicaCount, so.Spec.MaxReplicaCount
		if lo == nil || hi == nil || *lo < 1 || *hi < *lo || *w.Spec.Replicas < *lo || *w.Spec.Replicas > *hi {
			t.Errorf("ScaledObject %s: replicas %v..%v, workload %d: want 1 ≤ min ≤ workload's replicas ≤ max", name, lo, hi, *w.Spec.Replicas)
		}
		if len(so.Spec.Triggers) == 0 {
			t.Errorf("ScaledObject %s has no trigger", name)
		}
		for _, tr := range so.Spec.Triggers {
			switch tr.Type {
			case "cpu", "memory":
				if tr.MetricType == "" || tr.Metadata["value"] == "" || w.Spec.Template.Spec.Containers[0].Resources.Requests[tr.Type] == "" {
					t.Errorf("ScaledObject %s: %s trigger needs metricType, value and the container's %s request", name, tr.Type, tr.Type)
				}
			case "prometheus":
				if tr.Metadata["serverAddress"] == "" || tr.Metadata["query"] == "" || tr.Metadata["threshold"] == "" {
					t.Errorf("ScaledObject %s: prometheus trigger without serverAddress, query or threshold", name)
				}
				checkMetricsExist(t, name, tr.Metadata["query"])
			case "kafka":
				if tr.Metadata["bootstrapServers"] != cm.Data["brokers"] {
					t.Errorf("ScaledObject %s: bootstrapServers %q, the services use %q", name, tr.Metadata["bootstrapServers"], cm.Data["brokers"])
				}
			default:
				t.Errorf("ScaledObject %s: unexpected trigger type %q", name, tr.Type)
			}
		}
	}
	rw := find(objs, "ScaledObject", "router-worker")
	if rw == nil {
		t.Fatal("no ScaledObject router-worker")
	}
	lanes := map[string]int32{}
	for _, tr := range rw.Spec.Triggers {
		if tr.Type != "kafka" {
			continue
		}
		for _, logical := range []string{topicspec.RequestsInteractive, topicspec.RequestsBatch} {
			if tr.Metadata["topic"] == spec.Name(logical) {
				tp, _ := spec.Topic(logical)
				lanes[logical] = tp.Partitions
			}
		}
		if tr.Metadata["offsetResetPolicy"] != "earliest" {
			t.Errorf("router-worker trigger on %s: offsetResetPolicy %q, want earliest (router-worker starts a new group at the start)", tr.Metadata["topic"], tr.Metadata["offsetResetPolicy"])
		}
		if tr.Metadata["allowIdleConsumers"] == "true" {
			t.Errorf("router-worker trigger on %s allows idle consumers: workers beyond the partitions get nothing", tr.Metadata["topic"])
		}
		if n, err := strconv.Atoi(tr.Metadata["lagThreshold"]); err != nil || n < 1 {
			t.Errorf("router-worker trigger on %s: lagThreshold %q", tr.Metadata["topic"], tr.Metadata["lagThreshold"])
		}
	}
	if len(lanes) != 2 {
		t.Errorf("router-worker's kafka triggers cover %v: want both requests topics, %s and %s", lanes, spec.Name(topicspec.RequestsInteractive), spec.Name(topicspec.RequestsBatch))
	}
	most := int32(math.MaxInt32)
	for _, p := range lanes {
		most = min(most, p)
	}
	if rw.Spec.MaxReplicaCount != nil && int32(*rw.Spec.MaxReplicaCount) > most {
		t.Errorf("router-worker maxReplicaCount %d > %d partitions of the requests topics (topics.yaml): the extra workers would sit idle", *rw.Spec.MaxReplicaCount, most)
	}
	if w := find(objs, "StatefulSet", "router-worker"); w != nil && int32(*w.Spec.Replicas) > most {
		t.Errorf("router-worker replicas %d > %d partitions", *w.Spec.Replicas, most)
	}
}

// checkMetricsExist: every switchboard_* metric a query names is one the
// code registers.
func checkMetricsExist(t *testing.T, name, query string) {
	t.Helper()
	var src bytes.Buffer
	for _, dir := range []string{"../internal/ingress", "../internal/router", "../internal/egress"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if b, err := os.ReadFile(f); err == nil {
				src.Write(b)
			}
		}
	}
	for _, m := range regexp.MustCompile(`switchboard_[a-z_]+`).FindAllString(query, -1) {
		if !bytes.Contains(src.Bytes(), []byte(`"`+m+`"`)) {
			t.Errorf("ScaledObject %s: query uses %s, which no service registers", name, m)
		}
	}
}

// TestKubernetesAgainstBinaries checks the example against the built
// binaries: every flag exists, every environment variable is one the
// binary reads, the admin listener serves the probed paths, the router
// group KEDA watches is router-worker's, and KEDA adds every worker before
// ingress sheds load.
func TestKubernetesAgainstBinaries(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binaries")
	}
	objs := loadK8s(t)
	bin := buildOnce(t)
	cm := find(objs, "ConfigMap", "switchboard-config")
	telemetry, err := os.ReadFile("../internal/telemetry/telemetry.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"/readyz", "/healthz"} {
		if !bytes.Contains(telemetry, []byte(`"GET `+p+`"`)) {
			t.Errorf("the admin listener (internal/telemetry) does not serve %s, which the probes use", p)
		}
	}
	check := func(o k8sObject, binary string) {
		for _, c := range o.Spec.Template.Spec.Containers {
			flags := flagsOf(t, bin[binary])
			for _, a := range c.Args {
				if f, ok := strings.CutPrefix(a, "--"); ok {
					if _, ok := flags[f]; !ok {
						t.Errorf("%s: --%s is no flag of %s", o, f, binary)
					}
				}
			}
			envs := envsOf(t, bin[binary], binary, cm)
			for _, e := range c.Env {
				if !envs[e.Name] {
					t.Errorf("%s: env %s is read by no setting of %s (have %v)", o, e.Name, binary, slices.Sorted(maps.Keys(envs)))
				}
			}
		}
	}
	for name, kind := range k8sWorkloads {
		if w := find(objs, kind, name); w != nil {
			check(*w, name)
		}
	}
	if job := find(objs, "Job", "switchboard-topics"); job != nil {
		check(*job, "topics")
	}
	rw := find(objs, "StatefulSet", "router-worker")
	so := find(objs, "ScaledObject", "router-worker")
	if rw == nil || so == nil {
		t.Fatal("no router-worker StatefulSet or ScaledObject")
	}
	group := flagValue(rw.Spec.Template.Spec.Containers[0].Args, "group")
	if group == "" {
		group = flagsOf(t, bin["router-worker"])["group"]
	}
	ingress := flagsOf(t, bin["ingress"])
	for _, tr := range so.Spec.Triggers {
		if tr.Type != "kafka" {
			continue
		}
		if tr.Metadata["consumerGroup"] != group {
			t.Errorf("router-worker trigger: consumerGroup %q, router-worker's group is %q", tr.Metadata["consumerGroup"], group)
		}
		shed := "interactive-lag-high"
		if strings.HasSuffix(tr.Metadata["topic"], topicspec.RequestsBatch) {
			shed = "batch-lag-high"
		}
		threshold, _ := strconv.Atoi(tr.Metadata["lagThreshold"])
		high, err := strconv.Atoi(ingress[shed])
		if err != nil {
			t.Errorf("ingress --%s default %q", shed, ingress[shed])
			continue
		}
		if threshold**so.Spec.MaxReplicaCount > high {
			t.Errorf("router-worker trigger on %s: lagThreshold %d × maxReplicaCount %d > ingress's --%s %d: ingress sheds load before KEDA added every worker",
				tr.Metadata["topic"], threshold, *so.Spec.MaxReplicaCount, shed, high)
		}
	}
}

// envsOf returns the environment variables binary reads: its settings'
// (the "(env X)" of its -h), the ones its main package reads itself
// (Getenv("X")), and those the ConfigMap's files it loads name
// (${X} and api_key_env in backends.yaml, webhook_secret_env in tenants.yaml).
func envsOf(t *testing.T, path, binary string, cm *k8sObject) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	usage, _ := exec.Command(path, "-h").CombinedOutput() // exit status 0 or 2 by binary
	for _, m := range regexp.MustCompile(`\(env ([A-Z0-9_]+)\)`).FindAllStringSubmatch(string(usage), -1) {
		out[m[1]] = true
	}
	files, _ := filepath.Glob(filepath.Join("..", binary, "*.go"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		for _, m := range regexp.MustCompile(`[Gg]etenv\("([A-Z0-9_]+)"\)`).FindAllStringSubmatch(string(b), -1) {
			out[m[1]] = true
		}
	}
	refs := map[string]string{"router-worker": cm.Data["backends.yaml"], "ingress": cm.Data["tenants.yaml"], "egress": cm.Data["tenants.yaml"]}[binary]
	for _, m := range regexp.MustCompile(`\$\{([A-Z0-9_]+)|(?:api_key_env|webhook_secret_env):\s*([A-Z0-9_]+)`).FindAllStringSubmatch(refs, -1) {
		out[m[1]+m[2]] = true
	}
	return out
}
