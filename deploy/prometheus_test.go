package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestPromtool runs promtool's checks of the config and rules, and the
// rules' unit tests (prometheus/alerts_test.yml).
func TestPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool is not installed (apt-get install prometheus; .ci/run installs it): rules and config were not checked")
	}
	for _, args := range [][]string{
		{"check", "config", "prometheus/prometheus.yml"},
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// requiredFamilies must be in a scrape of a stack that has answered
// requests and dead-lettered one (histograms by their _count series).
var requiredFamilies = []string{
	"switchboard_ingress_requests_total",
	"switchboard_ingress_request_duration_seconds_count",
	"switchboard_ingress_kafka_produce_records_total",
	"switchboard_router_requests_total",
	"switchboard_router_answer_latency_seconds_count",
	"switchboard_router_backend_call_duration_seconds_count",
	"switchboard_router_dead_letters_total",
	"switchboard_router_in_flight_records",
	"switchboard_router_queued_records",
	"switchboard_router_commit_duration_seconds_count",
	"switchboard_router_consumer_lag_records",
	"switchboard_router_kafka_fetch_records_total",
	"switchboard_router_kafka_produce_uncompressed_bytes_total",
	"switchboard_egress_subscribers",
	"switchboard_egress_events_sent_total",
	"switchboard_egress_kafka_fetch_uncompressed_bytes_total",
}

// TestPrometheusScrapesStack starts a real Prometheus server (Debian's
// prometheus package) that scrapes a running local stack with the alert
// rules loaded, and checks through its HTTP API that the targets are up,
// the Switchboard metric families are there, every dashboard query runs,
// and every rule evaluates.
func TestPrometheusScrapesStack(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries and a Prometheus server")
	}
	promBin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Skip("the prometheus server is not installed (apt-get install prometheus; .ci/run installs it): the scrape test did not run")
	}
	s := apptest.StartStack(t, buildOnce(t), apptest.StackOptions{})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	targets := map[string]string{"ingress": s.IngressAdminURL, "egress": s.EgressAdminURL, "router-worker": s.RouterURLs[0]}

	dir := t.TempDir()
	rules, err := filepath.Abs("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - %s\nscrape_configs:\n", rules)
	for _, job := range slices.Sorted(maps.Keys(targets)) {
		u, _ := url.Parse(targets[job])
		fmt.Fprintf(&cfg, "  - job_name: %s\n    static_configs:\n      - targets: [%q]\n", job, u.Host)
	}
	cfgPath := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	promURL := fmt.Sprintf("http://127.0.0.1:%d", apptest.FreePort(t))
	apptest.Start(t, "prometheus", promBin, "--config.file="+cfgPath, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+strings.TrimPrefix(promURL, "http://"), "--log.level=warn")
	if err := apptest.WaitHTTP(ctx, promURL+"/-/ready", time.Minute); err != nil {
		t.Fatalf("prometheus: %v", err)
	}

	// Every target is scraped successfully.
	if err := apptest.Wait(time.Minute, func() error {
		var res struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		}
		if err := api(ctx, promURL, "/api/v1/targets", nil, &res); err != nil {
			return err
		}
		up := 0
		for _, tg := range res.ActiveTargets {
			if tg.Health != "up" {
				return fmt.Errorf("target %s is %s: %s", tg.Labels["job"], tg.Health, tg.LastError)
			}
			up++
		}
		if up != len(targets) {
			return fmt.Errorf("%d of %d targets up", up, len(targets))
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	// Traffic while Prometheus scrapes, so rates and quantiles have data.
	traffic(ctx, t, s, 1)
	logFamilies(t, targets)
	checkMetrics(t, map[string]string{"ingress": s.IngressAdminURL, "egress": s.EgressAdminURL,
		"router-worker": s.RouterURLs[0], "modelsim": s.ModelsimURL})

	// The families are in Prometheus once the answers' metrics are scraped.
	var names []string
	if err := apptest.Wait(time.Minute, func() error {
		if err := api(ctx, promURL, "/api/v1/label/__name__/values", nil, &names); err != nil {
			return err
		}
		var missing []string
		for _, f := range requiredFamilies {
			if !slices.Contains(names, f) {
				missing = append(missing, f)
			}
		}
		if len(missing) > 0 {
			return fmt.Errorf("families not in Prometheus: %v", missing)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var sb []string
	for _, n := range names {
		if strings.HasPrefix(n, "switchboard_") {
			sb = append(sb, n)
		}
	}
	t.Logf("Prometheus holds %d metric names, %d of them switchboard_*", len(names), len(sb))

	// Every metric the dashboard or alerts use is in Prometheus, unless it
	// only appears after an event this run did not cause, or is pending.
	eventOnly := map[string]bool{
		"switchboard_egress_duplicates_dropped_total":   true, // a redelivered result
		"switchboard_egress_subscriber_overflows_total": true,
	}
	for name := range referencedMetrics(t) {
		re := regexp.MustCompile("^" + name + "(_bucket|_count|_sum)?$")
		found := slices.ContainsFunc(names, re.MatchString)
		switch {
		case found:
		case eventOnly[name]:
			t.Logf("%s: not in this scrape (appears after its first event)", name)
		case pendingMetrics[name] != "":
			t.Logf("%s: not exported yet (%s)", name, pendingMetrics[name])
		default:
			t.Errorf("the dashboard or alerts use %s, which the stack does not export", name)
		}
	}

	// Every dashboard query is valid PromQL that Prometheus evaluates.
	for _, expr := range dashboardExprs(t) {
		var res struct {
			ResultType string `json:"resultType"`
		}
		if err := api(ctx, promURL, "/api/v1/query", url.Values{"query": {expr}}, &res); err != nil {
			t.Errorf("dashboard query %q: %v", expr, err)
		}
	}
	// End-to-end latency has data. The first scrape of a histogram child
	// already holds its first observations, so rates need a second round.
	traffic(ctx, t, s, 2)
	var lat struct {
		Result []struct {
			Value [2]any `json:"value"`
		} `json:"result"`
	}
	if err := apptest.Wait(30*time.Second, func() error {
		q := `histogram_quantile(0.99, sum by (le) (rate(switchboard_router_answer_latency_seconds_bucket[1m])))`
		if err := api(ctx, promURL, "/api/v1/query", url.Values{"query": {q}}, &lat); err != nil {
			return err
		}
		if len(lat.Result) == 0 || lat.Result[0].Value[1] == "NaN" {
			return fmt.Errorf("no end-to-end latency yet")
		}
		return nil
	}); err != nil {
		t.Error(err)
	} else {
		t.Logf("end-to-end p99 latency in Prometheus: %v s", lat.Result[0].Value[1])
	}

	// The alert rules are loaded and evaluate without errors.
	if err := apptest.Wait(30*time.Second, func() error {
		var res struct {
			Groups []struct {
				Name  string `json:"name"`
				Rules []struct {
					Name           string `json:"name"`
					Health         string `json:"health"`
					LastError      string `json:"lastError"`
					LastEvaluation string `json:"lastEvaluation"`
				} `json:"rules"`
			} `json:"groups"`
		}
		if err := api(ctx, promURL, "/api/v1/rules", nil, &res); err != nil {
			return err
		}
		n := 0
		for _, g := range res.Groups {
			for _, r := range g.Rules {
				if r.Health != "ok" {
					return fmt.Errorf("rule %s/%s: health %q %s", g.Name, r.Name, r.Health, r.LastError)
				}
				n++
			}
		}
		if n != 10 {
			return fmt.Errorf("%d rules loaded, want 10", n)
		}
		return nil
	}); err != nil {
		t.Error(err)
	}
}

// traffic sends streamed and plain requests through ingress, each to a
// new conversation whose stream is open before the request is sent, waits
// for the answers through egress, and writes one request for an unknown
// model straight to Kafka (a dead letter). round keeps conversation IDs apart between calls.
func traffic(ctx context.Context, t *testing.T, s *apptest.Stack, round int) {
	t.Helper()
	post := func(conv, body string) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.IngressURL+"/v1/conversations/"+conv+"/messages", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apptest.DevKey)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusAccepted {
			t.Fatalf("ingress: %s %s", resp.Status, b)
		}
	}
	for i := range 10 {
		conv := fmt.Sprintf("prom-%d-%d", round, i)
		connected := make(chan struct{})
		done := make(chan error, 1)
		go func() {
			done <- apptest.ReadSSE(ctx, s.EgressURL+"/v1/conversations/"+conv+"/events", "", func() { close(connected) },
				func(ev apptest.Event) bool { return ev.Name == "chunk" })
		}()
		select {
		case <-connected:
		case err := <-done:
			t.Fatalf("egress: %v", err)
		}
		post(conv, fmt.Sprintf(`{"model":"sim","stream":%t,"messages":[{"role":"user","content":"hello %d"}]}`, i%2 == 0, i))
		if err := <-done; err != nil {
			t.Fatalf("egress: %v", err)
		}
	}
	// Ingress refuses a model no backend serves; a direct producer's record
	// for one is dead-lettered.
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(s.Brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	rec, err := envelope.EncodeRequest("switchboard.requests.interactive", &pb.Request{RequestId: fmt.Sprintf("prom-dead-%d", round),
		ConversationId: fmt.Sprintf("prom-%d-dead", round), Tenant: "dev", Lane: "interactive", Model: "no-such-model",
		Messages: []*pb.Message{{Role: "user", Content: "x"}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.ProduceSync(ctx, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// logFamilies counts the metric families each service exposes on /metrics.
func logFamilies(t *testing.T, targets map[string]string) {
	t.Helper()
	all := map[string]bool{}
	for _, job := range slices.Sorted(maps.Keys(targets)) {
		resp, err := http.Get(targets[job] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		parser := expfmt.NewTextParser(model.UTF8Validation)
		fams, err := parser.TextToMetricFamilies(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("%s /metrics: %v", job, err)
		}
		own := 0
		for name := range fams {
			all[name] = true
			if strings.HasPrefix(name, "switchboard_") {
				own++
			}
		}
		t.Logf("%s exposes %d metric families (%d switchboard_*, the rest Go runtime and process)", job, len(fams), own)
	}
	t.Logf("the stack exposes %d distinct metric families", len(all))
}

func api(ctx context.Context, base, path string, q url.Values, out any) error {
	u := base + path
	if q != nil {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var env struct {
		Status string          `json:"status"`
		Data   json.RawMessage `json:"data"`
		Error  string          `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&env); err != nil {
		return fmt.Errorf("%s: %s: %w", path, resp.Status, err)
	}
	if env.Status != "success" {
		return fmt.Errorf("%s: %s", path, env.Error)
	}
	return json.Unmarshal(env.Data, out)
}

// checkMetrics runs `promtool check metrics` (metric names, types, help
// and units by Prometheus' conventions) on each service's /metrics.
func checkMetrics(t *testing.T, targets map[string]string) {
	t.Helper()
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Log("promtool is not installed: the metrics lint did not run")
		return
	}
	for _, job := range slices.Sorted(maps.Keys(targets)) {
		resp, err := http.Get(targets[job] + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("%s: promtool check metrics: %v\n%s", job, err, out)
		}
	}
}
