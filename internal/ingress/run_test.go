package ingress

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// running is an ingress served by Run on loopback ports.
type running struct {
	in       *Ingress
	url      string
	grpcAddr string
	stop     func() error
}

func runIngress(t *testing.T, in *Ingress) *running {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- in.Run(ctx) }()
	r := &running{in: in, url: "http://" + in.cfg.Addr, grpcAddr: in.cfg.GRPCAddr}
	stopped := false
	var runErr error
	r.stop = func() error {
		if !stopped {
			stopped = true
			cancel()
			select {
			case runErr = <-errc:
			case <-time.After(30 * time.Second):
				t.Error("Run did not return within 30s of its context ending")
			}
		}
		return runErr
	}
	t.Cleanup(func() { _ = r.stop() }) // the tests that care call stop themselves
	deadline := time.Now().Add(10 * time.Second)
	for {
		res, err := http.Get(r.url + "/openapi.json")
		if err == nil {
			res.Body.Close()
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("ingress did not come up: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func post(t *testing.T, url, body string, headers map[string]string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+devKey)
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, b
}

// TestBrokerDownAnswers503Fast stops the broker under a running ingress:
// requests get 503 within a second (the produce timeout is far longer),
// /readyz says not ready, nothing is acknowledged, and once stopped no
// goroutine is left (goleak in TestMain).
func TestBrokerDownAnswers503Fast(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, func(c *Config) {
		c.Addr = freeAddr(t)
		c.ProduceTimeout = 30 * time.Second
		c.ShutdownGrace = time.Second
	})
	r := runIngress(t, in)
	const body = `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`
	if res, b := post(t, r.url+"/v1/conversations/c/messages", body, nil); res.StatusCode != 202 {
		t.Fatalf("with the broker up: %d %s", res.StatusCode, b)
	}
	cluster.Close()
	for i := range 5 {
		start := time.Now()
		res, b := post(t, r.url+"/v1/conversations/c/messages", body, nil)
		took := time.Since(start)
		if res.StatusCode != http.StatusServiceUnavailable || res.Header.Get("Retry-After") == "" {
			t.Fatalf("request %d with the broker down: %d %s, want 503 with Retry-After", i, res.StatusCode, b)
		}
		if took > time.Second {
			t.Errorf("request %d: 503 after %v, want within a second", i, took)
		}
	}
	if err := r.in.Ready(httptest.NewRequest("GET", "/readyz", nil)); err == nil {
		t.Error("ready with the broker down, want not ready")
	}
	if err := r.stop(); err == nil {
		t.Log("Run returned nil although the final flush could not reach the broker")
	}
}

// TestShutdownFinishesAcceptedWork: requests sent just before the stop are
// answered (acknowledged records) and the listener then refuses more.
func TestShutdownFinishesAcceptedWork(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, func(c *Config) { c.Addr = freeAddr(t) })
	r := runIngress(t, in)
	const body = `{"model":"sim","messages":[{"role":"user","content":"hi"}]}`
	results := make(chan int, 20)
	for range 20 {
		go func() {
			req, _ := http.NewRequest("POST", r.url+"/v1/conversations/c/messages", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+devKey)
			req.Header.Set("Content-Type", "application/json")
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				results <- 0
				return
			}
			var a ack
			_ = json.NewDecoder(res.Body).Decode(&a) // a 202 without an ack is reported below
			res.Body.Close()
			if res.StatusCode == 202 && a.RequestID == "" {
				results <- -1
				return
			}
			results <- res.StatusCode
		}()
	}
	time.Sleep(5 * time.Millisecond)
	if err := r.stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	for range 20 {
		switch code := <-results; code {
		case 202, 0: // answered, or refused at connect after the stop
		case -1:
			t.Error("a 202 without an ack")
		default:
			t.Errorf("a request sent around the stop got %d", code)
		}
	}
	if _, err := http.Get(r.url + "/openapi.json"); err == nil {
		t.Error("still listening after Run returned")
	}
}
