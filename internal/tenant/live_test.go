package tenant

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

func tenantsYAML(keys ...string) string {
	s := "tenants:\n"
	for i, k := range keys {
		s += "  - name: t" + string(rune('a'+i)) + "\n    key_sha256: [" + HashKey(k) + "]\n"
	}
	return s
}

// TestLiveReloads: a changed file is applied by polling and on a signal,
// Changed's channel is closed each time, and a file that does not parse
// or check is rejected (reported, logged) with the running tenants kept.
func TestLiveReloads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil { // as editors and config maps replace files
			t.Fatal(err)
		}
	}
	write(tenantsYAML("k1", "k2"))
	var mu sync.Mutex
	var reports []error
	refuse := errors.New("refused by the check")
	l, err := OpenLive(path, LiveOptions{
		Logger: slog.New(slog.DiscardHandler),
		Check: func(s *Set) error {
			if s.Tenant("tc") != nil {
				return refuse
			}
			return nil
		},
		Report: func(err error) { mu.Lock(); reports = append(reports, err); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	sig := make(chan os.Signal, 1)
	done := make(chan struct{})
	go func() { defer close(done); l.Watch(t.Context(), sig, 10*time.Millisecond) }()

	authenticates := func(key string) bool { _, err := l.Set().Authenticate(key); return err == nil }
	waitChange := func(ch <-chan struct{}, what string) {
		t.Helper()
		select {
		case <-ch:
		case <-time.After(5 * time.Second):
			t.Fatalf("%s: no reload within 5s", what)
		}
	}
	if !authenticates("k2") || authenticates("k3") {
		t.Fatal("the first file is not what Live holds")
	}

	// k2 revoked, k3 added: applied by polling.
	ch := l.Changed()
	write(tenantsYAML("k1", "k3"))
	waitChange(ch, "a changed file")
	if authenticates("k2") || !authenticates("k3") || !authenticates("k1") {
		t.Error("after the change: k2 still valid or k1/k3 not")
	}

	// A broken file and a file the check refuses: both rejected, old kept.
	before := l.Set()
	write("tenants: [")
	write(tenantsYAML("k1", "k3", "k4")) // tc: refused by the check
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(reports)
		last := error(nil)
		if n > 0 {
			last = reports[n-1]
		}
		mu.Unlock()
		if errors.Is(last, refuse) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused file was not reported: %v", reports)
		}
	}
	if l.Set() != before || !authenticates("k3") || authenticates("k4") {
		t.Error("a rejected file replaced the running tenants")
	}

	// A signal reloads at once, whatever the polling saw.
	ch = l.Changed()
	if err := os.WriteFile(path, []byte(tenantsYAML("k5")), 0o600); err != nil {
		t.Fatal(err)
	}
	sig <- os.Interrupt
	waitChange(ch, "a signal")
	if !authenticates("k5") || authenticates("k1") {
		t.Error("after the signal: k5 not valid or k1 still valid")
	}
	if err := l.Reload(); err != nil {
		t.Errorf("Reload of a good file: %v", err)
	}
}

func TestStaticLive(t *testing.T) {
	s, err := Parse([]byte(tenantsYAML("k")))
	if err != nil {
		t.Fatal(err)
	}
	l := StaticLive(s)
	if l.Set() != s || l.Reload() != nil {
		t.Error("a static Live changed or failed to reload")
	}
	l.Watch(t.Context(), nil, time.Millisecond) // returns at once: nothing to watch
}
