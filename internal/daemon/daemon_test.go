package daemon

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string { return func(k string) string { return kv[k] } }

// A setting's value comes from its flag, else its environment variable,
// else the default it was defined with.
func TestFlagsPrecedence(t *testing.T) {
	tests := []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{name: "default", want: "a:1"},
		{name: "environment", env: map[string]string{"X_BROKERS": "b:1,c:1"}, want: "b:1,c:1"},
		{name: "flag wins", args: []string{"--brokers", "d:1"}, env: map[string]string{"X_BROKERS": "b:1"}, want: "d:1"},
		{name: "empty environment is unset", env: map[string]string{"X_BROKERS": ""}, want: "a:1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFlags("x")
			brokers := []string{"a:1"}
			f.List(&brokers, "brokers", "brokers", FromEnv("X_BROKERS"))
			if err := f.Parse(tt.args, env(tt.env)); err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(brokers, ","); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFlagsErrors(t *testing.T) {
	f := NewFlags("x")
	var d time.Duration
	f.Duration(&d, "wait", "wait", FromEnv("X_WAIT"))
	if err := f.Parse(nil, env(map[string]string{"X_WAIT": "soon"})); err == nil || !strings.Contains(err.Error(), "X_WAIT") {
		t.Errorf("bad environment value: got %v, want an error naming X_WAIT", err)
	}
	if err := NewFlags("x").Parse([]string{"extra"}, nil); err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("stray argument: got %v", err)
	}
}

func TestAlias(t *testing.T) {
	f := NewFlags("x")
	addr := "a"
	f.String(&addr, "admin-addr", "addr")
	f.Alias("addr", "admin-addr")
	if err := f.Parse([]string{"--addr", "b"}, nil); err != nil || addr != "b" {
		t.Errorf("--addr: got %q, %v; want b", addr, err)
	}
}

func TestVersionAndHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	d := New(Program{Name: "x"})
	ran := false
	run := func(context.Context, *Env) error { ran = true; return nil }
	if err := d.Run(t.Context(), []string{"--version"}, nil, &out, &errOut, run); err != nil || ran || !strings.HasPrefix(out.String(), "x ") {
		t.Errorf("--version: err %v, ran %v, stdout %q", err, ran, out.String())
	}
	d = New(Program{Name: "x", Kafka: true, AdminAddr: "127.0.0.1:0"})
	if err := d.Run(t.Context(), []string{"--help"}, nil, &out, &errOut, run); !errors.Is(err, flag.ErrHelp) || ran {
		t.Errorf("--help: err %v, ran %v", err, ran)
	}
	for _, want := range []string{"-brokers", "SWITCHBOARD_BROKERS", "-admin-addr", "-log-format", "-version", "-pprof"} {
		if !strings.Contains(errOut.String(), want) {
			t.Errorf("usage lacks %s:\n%s", want, errOut.String())
		}
	}
	d = New(Program{Name: "x"})
	err := d.Run(t.Context(), []string{"--log-format", "xml"}, nil, &out, &errOut, run)
	if !errors.Is(err, ErrUsage) || d.exitCode(err, io.Discard) != 2 {
		t.Errorf("bad log format: got %v, want a usage error (status 2)", err)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	res, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// The admin listener is bound before the run starts, answers /readyz with
// 503 until the run says how to judge readiness, serves /metrics, keeps
// pprof off unless asked, and stops after the run returns.
func TestAdminListener(t *testing.T) {
	d := New(Program{Name: "x", AdminAddr: "127.0.0.1:8084"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	errc := make(chan error, 1)
	var addr string
	ready := make(chan struct{})
	setReady := make(chan struct{})
	go func() {
		errc <- d.Run(ctx, []string{"--admin-addr", "127.0.0.1:0"}, nil, io.Discard, io.Discard, func(ctx context.Context, env *Env) error {
			addr = env.AdminAddr
			if !env.HandleAdmin("/extra", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "extra") })) {
				t.Error("HandleAdmin with an admin listener reported none")
			}
			close(ready)
			<-setReady
			env.SetReady(func(*http.Request) error { return nil })
			<-ctx.Done()
			return nil
		})
	}()
	<-ready
	base := "http://" + addr
	if code, body := get(t, base+"/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "starting") {
		t.Errorf("/readyz before SetReady: %d %q, want 503 starting", code, body)
	}
	close(setReady)
	deadline := time.Now().Add(5 * time.Second)
	for code, _ := get(t, base+"/readyz"); code != http.StatusOK; code, _ = get(t, base+"/readyz") {
		if time.Now().After(deadline) {
			t.Fatalf("/readyz still %d after SetReady", code)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if code, body := get(t, base+"/metrics"); code != http.StatusOK || !strings.Contains(body, "go_goroutines") {
		t.Errorf("/metrics: %d, want 200 with the Go collector", code)
	}
	if code, _ := get(t, base+"/debug/pprof/"); code != http.StatusNotFound {
		t.Errorf("/debug/pprof/ without --pprof: %d, want 404", code)
	}
	if code, body := get(t, base+"/extra"); code != http.StatusOK || body != "extra" {
		t.Errorf("/extra (HandleAdmin): %d %q, want 200 extra", code, body)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res, err := http.Get(base + "/healthz"); err == nil {
		res.Body.Close()
		t.Error("admin listener still answers after Run returned")
	}
}

// A taken admin port fails the start before the run begins.
func TestAdminListenerTaken(t *testing.T) {
	first := New(Program{Name: "x", AdminAddr: "127.0.0.1:0"})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	addrc := make(chan string, 1)
	errc := make(chan error, 1)
	go func() {
		errc <- first.Run(ctx, nil, nil, io.Discard, io.Discard, func(ctx context.Context, env *Env) error {
			addrc <- env.AdminAddr
			<-ctx.Done()
			return nil
		})
	}()
	addr := <-addrc
	ran := false
	err := New(Program{Name: "y", AdminAddr: addr}).Run(t.Context(), nil, nil, io.Discard, io.Discard,
		func(context.Context, *Env) error { ran = true; return nil })
	if err == nil || ran {
		t.Errorf("second daemon on %s: err %v, ran %v; want an error before the run", addr, err, ran)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("first daemon: %v", err)
	}
}

// A run that does not return within --stop-timeout of the stop ends with
// an error instead of hanging.
func TestStopTimeout(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	release := make(chan struct{})
	defer close(release)
	errc := make(chan error, 1)
	go func() {
		errc <- New(Program{Name: "x"}).Run(ctx, []string{"--stop-timeout", "50ms"}, nil, io.Discard, io.Discard,
			func(context.Context, *Env) error { <-release; return nil })
	}()
	cancel()
	select {
	case err := <-errc:
		if err == nil || !strings.Contains(err.Error(), "stop-timeout") {
			t.Errorf("got %v, want a stop-timeout error", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after the stop timeout")
	}
}

// An error of the run's own ends Run with that error; ExitCode sets the
// status Main exits with.
func TestRunError(t *testing.T) {
	boom := errors.New("boom")
	d := New(Program{Name: "x"})
	err := d.Run(t.Context(), nil, nil, io.Discard, io.Discard, func(context.Context, *Env) error { return ExitCode(3, boom) })
	if !errors.Is(err, boom) || d.exitCode(err, io.Discard) != 3 {
		t.Errorf("got %v (status %d), want boom with status 3", err, d.exitCode(err, io.Discard))
	}
}
