package loadtest

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func sampleReport(scenario string, p99 float64, lost int) *Report {
	return &Report{
		Scenario: scenario, Description: "test <run>", Label: "loaded machine", Command: "loadtest --x", StartedAt: time.Date(2026, 11, 24, 8, 0, 0, 0, time.UTC),
		Driver: "http", Reader: "sse", DurationS: 20, WarmupS: 3, Settings: map[string]string{"rate": "1000"},
		Classes: map[string]*ClassReport{
			"interactive": {Lane: "interactive", Mode: "open", OfferedRate: 1000, AchievedRate: 998, Sent: 20000, Measured: 17000, Accepted: 17000,
				Succeeded: 17000, Lost: lost, SuccessRate: 1, SuccessRateFirstAttempt: 0.9876, Resends: 250, Retried: 211, LatencyMS: Percentiles{Count: 17000, P50: 210, P90: 220, P99: p99, P999: p99 + 5, Max: p99 + 10},
				OverLimitMS: Percentiles{Count: 17000, P50: 4, P90: 6, P99: 9, P999: 12, Max: 15}},
			"batch": {Lane: "batch", Mode: "closed", Users: 10},
		},
		Errors:  map[string]int{"http_503_unavailable": 2},
		Retries: 10, RetryBudgetS: 30, Resent: map[string]int{"http_503_unavailable": 250},
		Recovery: &RecoveryReport{Class: "interactive", BaselineP99MS: 230, BoundMS: 345, WindowS: 1, TargetS: 5,
			Faults: []FaultRecovery{{Fault: "kill -9 router-worker", AtS: 4, RestartS: 5.2, RecoveredAfterS: new(2.0), Windows: []float64{900, 400, 300, 250, 240}, Failed: 7}}},
		Processes: map[string]*ProcessReport{ProcRouter: {CPUSeconds: 5, CPUPerRequestMS: 0.3, MaxRSSMB: 40}},
		Events:    []Event{{T: 4, What: "kill -9 router-worker"}},
		Series: Series{
			Classes: map[string]*ClassSeries{"interactive": {Sent: []Point{{0, 1000}, {1, 1000}}, Answered: []Point{{0, 900}, {1, 1000}},
				P50MS: []Point{{0, 210}, {1, 212}}, P99MS: []Point{{0, p99}, {1, p99}}}},
			Lag: map[string][]Point{"switchboard.requests.interactive": {{0, 10}, {1, 300}}},
			CPU: map[string][]Point{ProcRouter: {{1, 0.4}}},
		},
		Checks: []Check{{Name: "interactive: nothing lost", Pass: lost == 0, Detail: "x"}},
	}
}

func TestJSONRoundTrip(t *testing.T) {
	dir := t.TempDir()
	suite := &Suite{Label: "l", Command: "c", Reports: []*Report{sampleReport("baseline", 230, 0), sampleReport("spike", 400, 1)}}
	for name, v := range map[string]any{"suite.json": suite, "one.json": suite.Reports[0]} {
		path := filepath.Join(dir, name)
		if err := WriteJSON(path, v); err != nil {
			t.Fatal(err)
		}
		got, err := ReadSuite(path)
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Reports) == 0 || got.Reports[0].Classes["interactive"].LatencyMS.P99 != 230 || got.Reports[0].Series.Lag["switchboard.requests.interactive"][1].V != 300 {
			t.Errorf("%s: read back %+v", name, got.Reports)
		}
	}
	if !suite.Failed() {
		t.Error("a suite with a failed check reports no failure")
	}
	if err := os.WriteFile(filepath.Join(dir, "other.json"), []byte(`{"foo":1}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadSuite(filepath.Join(dir, "other.json")); err == nil {
		t.Error("a JSON file that is no report was accepted")
	}
}

func TestCompare(t *testing.T) {
	a := &Suite{Reports: []*Report{sampleReport("baseline", 200, 0), sampleReport("chaos", 900, 0)}}
	b := &Suite{Reports: []*Report{sampleReport("baseline", 300, 2), sampleReport("spike", 500, 0)}}
	cs := Compare(a, b)
	byTitle := map[string]Comparison{}
	for _, c := range cs {
		byTitle[c.Scenario+"/"+c.Class] = c
	}
	if byTitle["chaos/"].Missing != "b" || byTitle["spike/"].Missing != "a" {
		t.Errorf("missing sides wrong: %+v", cs)
	}
	base := byTitle["baseline/interactive"]
	metrics := map[string]Metric{}
	for _, m := range base.Metrics {
		metrics[m.Name] = m
	}
	p99 := metrics["e2e p99 ms"]
	if p99.A != 200 || p99.B != 300 || p99.Delta() != 100 || p99.Change() != 0.5 || p99.Verdict(0.05) != "worse" {
		t.Errorf("p99 metric %+v delta %v change %v verdict %s", p99, p99.Delta(), p99.Change(), p99.Verdict(0.05))
	}
	if v := metrics["achieved/s"].Verdict(0.05); v != "same" {
		t.Errorf("equal throughput verdict %s, want same", v)
	}
	if m := (Metric{A: 100, B: 120, HigherBetter: true}); m.Verdict(0.05) != "better" {
		t.Errorf("higher throughput verdict %s, want better", m.Verdict(0.05))
	}
	if lag := metrics["lag peak (records)"]; lag.A != 300 {
		t.Errorf("lag peak %v, want 300", lag.A)
	}
	if _, ok := metrics["router-worker CPU ms/request"]; !ok {
		t.Error("no per-process CPU metric")
	}
	if m := metrics["success before retries %"]; m.A != 98.76 {
		t.Errorf("success before retries %+v, want 98.76 %%", m)
	}
	var buf bytes.Buffer
	WriteComparison(&buf, a, b, "a.json", "b.json")
	for _, want := range []string{"== baseline / interactive", "e2e p99 ms", "+100.00", "worse", "only in A"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("comparison lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestHTMLIsSelfContained(t *testing.T) {
	var buf bytes.Buffer
	suite := &Suite{Label: "loaded machine", Command: "loadtest --scenarios all", Reports: []*Report{sampleReport("baseline", 230, 0), sampleReport("chaos", 900, 3)}}
	if err := WriteHTML(&buf, suite); err != nil {
		t.Fatal(err)
	}
	h := buf.String()
	for _, want := range []string{"<svg", "End-to-end latency", "Throughput", "Consumer lag", "Errors per second", "kill -9 router-worker",
		"loaded machine", "test &lt;run&gt;", `class="fail"`, "success before retries", "98.760 %", "Recovery (interactive)", "<td>2</td><td>7</td>"} {
		if !strings.Contains(h, want) {
			t.Errorf("HTML lacks %q", want)
		}
	}
	// Nothing is fetched: no scripts, stylesheets or images from elsewhere
	// (the SVG namespace is an identifier, not a fetch).
	if m := regexp.MustCompile(`(src|href)="(https?:)?//`).FindString(h); m != "" {
		t.Errorf("HTML fetches %s", m)
	}
	if strings.Contains(h, "<script") {
		t.Error("HTML has a script")
	}
}

func TestSummaryMentionsEverything(t *testing.T) {
	var buf bytes.Buffer
	sampleReport("baseline", 230, 1).WriteSummary(&buf)
	for _, want := range []string{"== baseline", "loaded machine", "offered 1000.0/s", "p99    230.0", "lost 1", "http_503_unavailable=2",
		"router-worker", "[FAIL] interactive: nothing lost", "lag switchboard.requests.interactive: peak 300", "over limit",
		"success before retries 98.760%, after 100.000%; 211 requests resent, 250 resends", "resent after: http_503_unavailable=250",
		"recovered after 2 s; window p99s ms [900 400 300 250 240]; 7 failed"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, buf.String())
		}
	}
}

func TestNiceCeil(t *testing.T) {
	for _, tc := range []struct{ in, want float64 }{{0.7, 1}, {1, 1}, {1.1, 2}, {3, 5}, {7, 10}, {230, 500}, {1200, 2000}} {
		if got := niceCeil(tc.in); got != tc.want {
			t.Errorf("niceCeil(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
