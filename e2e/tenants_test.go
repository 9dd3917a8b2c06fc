package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// TestTenantsReloadWithoutRestart: the real ingress and egress take a
// tenants change without a restart: ingress on SIGHUP (its polling turned
// off), egress by polling. A revoked key is refused by both within 5s,
// its open stream ends with "revoked", the other keys keep working, and a
// broken file is rejected with the running tenants kept.
func TestTenantsReloadWithoutRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binaries")
	}
	const extraKey = "sk-e2e-revoked-tenant"
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	base, err := os.ReadFile("../tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	extra := fmt.Sprintf("  - name: extra\n    key_sha256: [%s]\n", tenant.HashKey(extraKey))
	write := func(b []byte) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	write(append(append([]byte(nil), base...), extra...))
	s := apptest.StartStack(t, bin, apptest.StackOptions{TenantsFile: path,
		IngressArgs: []string{"--tenants-check-interval", "-1s"}, EgressArgs: []string{"--tenants-check-interval", "200ms"}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	post := func(key string) int {
		code, _, _ := send(ctx, t, "POST", s.IngressURL+"/v1/conversations/reload/messages",
			`{"model":"sim","messages":[{"role":"user","content":"hi"}]}`, map[string]string{"Authorization": "Bearer " + key})
		return code
	}
	if code := post(extraKey); code != http.StatusAccepted {
		t.Fatalf("the extra tenant before the change: %d, want 202", code)
	}
	// The extra tenant's stream (apptest.ReadSSE would send the dev key).
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.EgressURL+"/v1/conversations/reload/events", nil)
	req.Header.Set("Authorization", "Bearer "+extraKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("the extra tenant's stream: %v %v", resp, err)
	}
	defer resp.Body.Close()
	ended := make(chan string, 1)
	go func() {
		last := ""
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			if line := sc.Text(); strings.HasPrefix(line, "event:") || strings.HasPrefix(line, "data:") {
				last += line + " "
				if strings.HasPrefix(line, "data:") && !strings.Contains(last, "event: end") {
					last = ""
				}
			}
		}
		ended <- last
	}()
	waitMetric(ctx, t, s.EgressAdminURL, `switchboard_egress_subscribers{transport="sse"} 1`)

	changed := time.Now()
	write(base) // the extra tenant is gone
	if err := syscall.Kill(s.Ingress.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for post(extraKey) != http.StatusUnauthorized {
		if time.Since(changed) > 5*time.Second {
			t.Fatal("ingress still accepts the removed key 5s after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	select {
	case last := <-ended:
		if !strings.HasPrefix(last, "event: end data:") || !strings.Contains(last, `"reason":"revoked"`) {
			t.Errorf("the removed key's egress stream ended with %q, want reason revoked", last)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the removed key's egress stream still open 5s after the change")
	}
	t.Logf("revoked in ingress and egress %v after the change", time.Since(changed).Round(time.Millisecond))
	if code := post(apptest.DevKey); code != http.StatusAccepted {
		t.Errorf("the dev tenant after the change: %d, want 202", code)
	}

	write([]byte("tenants: ["))
	if err := syscall.Kill(s.Ingress.PID(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // both have seen the broken file by now
	if code := post(apptest.DevKey); code != http.StatusAccepted {
		t.Errorf("the dev tenant after a broken file: %d, want 202 (the running tenants stay)", code)
	}
	_, _, metrics := send(ctx, t, "GET", s.IngressAdminURL+"/metrics", "", nil)
	if want := `switchboard_ingress_tenants_reloads_total{result="error"} 1`; !strings.Contains(string(metrics), want) {
		t.Errorf("ingress metrics lack %s", want)
	}
}

// waitMetric waits (10s at most) until the admin listener at adminURL
// serves a metrics line starting with line.
func waitMetric(ctx context.Context, t *testing.T, adminURL, line string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		_, _, b := send(ctx, t, "GET", adminURL+"/metrics", "", nil)
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, line) {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no metric %s at %s", line, adminURL)
		}
	}
}
