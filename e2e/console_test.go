package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
)

// TestConsoleUI: egress's console page (/console on its admin listener),
// in headless Chromium, on a running stack: it loads with no errors in
// the browser's console, its numbers change when traffic flows, and a
// backend whose modelsim fails every call shows its breaker open. It
// needs Debian's chromium and chromium-driver (make test-ui; .ci/run
// installs them); without them it skips, except in CI.
func TestConsoleUI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries and a browser")
	}
	chromium, driver := findBrowser(t)
	s := apptest.StartStack(t, bin, apptest.StackOptions{
		RouterArgs:  []string{"--status-interval", "500ms"},
		IngressArgs: []string{"--status-interval", "500ms"},
	})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()

	// A second modelsim that answers every call with 500: the backend
	// "broken" of model "broken", added to the backends file later.
	brokenPort := apptest.FreePort(t)
	apptest.Start(t, "modelsim-broken", bin["modelsim"], "--addr", fmt.Sprintf("127.0.0.1:%d", brokenPort),
		"--models", "broken", "--latency", "1ms", "--error-rate", "500=1")
	if err := apptest.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", brokenPort), time.Minute); err != nil {
		t.Fatal(err)
	}

	wd := startWebDriver(ctx, t, driver, chromium)
	wd.open(s.EgressAdminURL + "/console/")
	wd.waitJS(t, 30*time.Second, "the page is live, with the router-worker's backend",
		`return document.getElementById("conn").textContent === "live" &&
		        document.querySelector('[data-backend="modelsim"] .breaker')?.textContent === "closed"`)
	before := wd.number(t, "sum-results")

	// Traffic: the results count and the chart's rate move.
	for i := range 20 {
		code, _, b := send(ctx, t, "POST", s.IngressURL+fmt.Sprintf("/v1/conversations/console-%d/messages", i%4),
			`{"model":"sim","messages":[{"role":"user","content":"hello console"}]}`, nil)
		if code != http.StatusAccepted {
			t.Fatalf("submit: %d %s", code, b)
		}
	}
	wd.waitJS(t, 30*time.Second, "the results count grows by 20 and the chart shows answers",
		`return Number(document.getElementById("sum-results").textContent.replace(/,/g, "")) >= arguments[0] + 20 &&
		        document.querySelector('[data-topic$="requests.interactive"]') !== null`, before)
	wd.waitJS(t, 30*time.Second, "a p99 latency shown", `return document.getElementById("sum-p99").textContent.endsWith(" ms")`)

	// A failing backend: its breaker opens after two failed calls.
	backends := s.Launcher.BackendsFile
	old, err := os.ReadFile(backends)
	if err != nil {
		t.Fatal(err)
	}
	add := fmt.Sprintf("  - name: broken\n    base_url: http://127.0.0.1:%d/v1\n    models: [broken]\n    timeout: 10s\nbreaker:\n  failures: 2\n  open_for: 5m\n", brokenPort)
	if err := os.WriteFile(backends, append(old, add...), 0o644); err != nil {
		t.Fatal(err)
	}
	wd.waitJS(t, 30*time.Second, "the reloaded backends file's new backend, closed",
		`return document.querySelector('[data-backend="broken"] .breaker')?.textContent === "closed"`)
	// Ingress accepts model "broken" once it has read the new catalog.
	accepted := 0
	for deadline := time.Now().Add(30 * time.Second); accepted < 2; time.Sleep(200 * time.Millisecond) {
		code, _, b := send(ctx, t, "POST", s.IngressURL+"/v1/conversations/console-broken-"+strconv.Itoa(accepted)+"/messages",
			`{"model":"broken","messages":[{"role":"user","content":"fail please"}]}`, nil)
		switch {
		case code == http.StatusAccepted:
			accepted++
		case time.Now().After(deadline):
			t.Fatalf("ingress does not accept model broken: %d %s", code, b)
		}
	}
	wd.waitJS(t, 60*time.Second, "the broken backend's breaker shown open",
		`return document.querySelector('[data-backend="broken"] .breaker')?.textContent === "open" &&
		        document.querySelector('[data-backend="broken"] .breaker').classList.contains("breaker-open") &&
		        Number(document.getElementById("sum-open").textContent) >= 1`)

	if errs := wd.browserErrors(t); len(errs) > 0 {
		t.Errorf("the browser's console has errors:\n%s", strings.Join(errs, "\n"))
	}
}

// waitJS waits until script (the body of a function; args are its
// arguments) returns true in the page.
func (wd *webDriver) waitJS(t *testing.T, timeout time.Duration, what, script string, args ...any) {
	t.Helper()
	if args == nil {
		args = []any{}
	}
	for deadline := time.Now().Add(timeout); ; time.Sleep(200 * time.Millisecond) {
		var out struct{ Value any }
		wd.call("POST", wd.session+"/execute/sync", map[string]any{"script": script, "args": args}, &out)
		if out.Value == true {
			return
		}
		if time.Now().After(deadline) {
			var page struct{ Value string }
			wd.call("POST", wd.session+"/execute/sync", map[string]any{"script": "return document.body.innerText", "args": []any{}}, &page)
			t.Fatalf("%s: not within %v; browser errors %v; the page:\n%s", what, timeout, wd.browserErrors(t), page.Value)
		}
	}
}

// number reads the number shown in the element with id (0 for "–").
func (wd *webDriver) number(t *testing.T, id string) float64 {
	t.Helper()
	n, _ := strconv.ParseFloat(strings.ReplaceAll(wd.text(id), ",", ""), 64)
	return n
}

// browserErrors returns the browser console's SEVERE entries (errors,
// failed loads, uncaught exceptions) since the last call.
func (wd *webDriver) browserErrors(t *testing.T) []string {
	t.Helper()
	var out struct {
		Value []struct {
			Level   string `json:"level"`
			Message string `json:"message"`
		} `json:"value"`
	}
	wd.call("POST", wd.session+"/se/log", map[string]string{"type": "browser"}, &out)
	var errs []string
	for _, e := range out.Value {
		if e.Level == "SEVERE" {
			errs = append(errs, e.Message)
		}
	}
	return errs
}
