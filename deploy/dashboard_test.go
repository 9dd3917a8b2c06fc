package deploy

import (
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// dashboard is the part of the Grafana dashboard JSON the tests read.
type dashboard struct {
	UID    string  `json:"uid"`
	Title  string  `json:"title"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID          int    `json:"id"`
	Type        string `json:"type"`
	Title       string `json:"title"`
	Description string `json:"description"`
	Datasource  *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	b, err := os.ReadFile("grafana/dashboards/switchboard.json")
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	return d
}

// dashboardExprs returns every PromQL expression of the dashboard, with
// Grafana's $__rate_interval made concrete.
func dashboardExprs(t *testing.T) []string {
	var out []string
	for _, p := range loadDashboard(t).Panels {
		for _, tg := range p.Targets {
			out = append(out, strings.ReplaceAll(tg.Expr, "$__rate_interval", "1m"))
		}
	}
	return out
}

var metricName = regexp.MustCompile(`\b(switchboard_[a-z0-9_]+|switchboard_\.\+_[a-z0-9_]+)`)

// referencedMetrics returns the metric names (or name patterns) the
// dashboard and the alert rules use, without histogram suffixes.
func referencedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	rules, err := os.ReadFile("prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(dashboardExprs(t), "\n") + "\n" + string(rules)
	out := map[string]bool{}
	for _, m := range metricName.FindAllString(text, -1) {
		m = strings.TrimSuffix(m, "_bucket")
		out[m] = true
	}
	return out
}

func TestDashboard(t *testing.T) {
	d := loadDashboard(t)
	if d.UID != "switchboard" || d.Title == "" {
		t.Errorf("uid %q title %q", d.UID, d.Title)
	}
	ids := map[int]bool{}
	want := map[string]bool{"Throughput": false, "End-to-end latency": false, "Lag per lane": false, "In flight and queued": false,
		"Circuit breakers": false, "Dead-letter rate": false, "Duplicates dropped": false}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		if _, ok := want[p.Title]; ok {
			want[p.Title] = true
		}
		if p.Type == "row" {
			continue
		}
		if p.Description == "" || p.Datasource == nil || p.Datasource.UID != "${datasource}" || len(p.Targets) == 0 {
			t.Errorf("panel %q: needs a description, the ${datasource} datasource and targets", p.Title)
		}
		for _, tg := range p.Targets {
			if !strings.Contains(tg.Expr, "switchboard_") {
				t.Errorf("panel %q: expression %q reads no Switchboard metric", p.Title, tg.Expr)
			}
		}
	}
	for title, found := range want {
		if !found {
			t.Errorf("dashboard has no %q panel", title)
		}
	}
}

// pendingMetrics are used by the dashboard and alerts but not exported by
// the code yet (none today). The tests report them; everything else must
// exist.
var pendingMetrics = map[string]string{}

// TestReferencedMetricsAreDefined checks that every metric the dashboard
// and alerts use is defined somewhere in the code: named in a Go source
// file, or made by kprom (switchboard_<service>_kafka_*). Families that only
// appear after an event (a duplicate, an overflow) are not in a fresh
// scrape, so this reads the source; TestPrometheusScrapesStack checks the
// rest against a live stack.
func TestReferencedMetricsAreDefined(t *testing.T) {
	var src strings.Builder
	err := filepath.WalkDir("..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".git" || d.Name() == "bin" || d.Name() == "data") {
			return filepath.SkipDir
		}
		if strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			src.Write(b)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	code := src.String()
	for name := range referencedMetrics(t) {
		if strings.Contains(name, ".+") { // the kprom families by service
			continue
		}
		defined := strings.Contains(code, `"`+name+`"`)
		if strings.HasPrefix(name, "switchboard_router_") && strings.Contains(code, `prefix + "_`+strings.TrimPrefix(name, "switchboard_router_")+`"`) {
			defined = true // keyorder metrics: MetricsPrefix "switchboard_router"
		}
		if strings.HasSuffix(name, "_consumer_lag_records") && strings.Contains(code, `"_consumer_lag_records"`) {
			defined = true // kafkaconf.LagCollector: "switchboard_"+service+"_consumer_lag_records"
		}
		if why, ok := pendingMetrics[name]; ok {
			if defined {
				t.Errorf("%s is defined now: remove it from pendingMetrics", name)
			} else {
				t.Logf("not exported yet, used by the dashboard and alerts: %s (%s)", name, why)
			}
			continue
		}
		if !defined {
			t.Errorf("the dashboard or alerts use %s, which no code defines", name)
		}
	}
}
