package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/switchboard-llm/switchboard/internal/apptest"
	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// BenchmarkIngressHTTP measures ingress alone: HTTP POST to the broker's
// acknowledgement, from 2,000 concurrent keep-alive connections, against
// the real ingress and devbroker processes (the router-worker is stopped,
// admission and rate limits are off, so nothing but ingress and the broker
// work). It reports requests/s, p50/p99 latency and the CPU time ingress
// and devbroker spent per request. Run:
//
//	go test -run '^$' -bench BenchmarkIngressHTTP -benchtime 100000x ./e2e/
func BenchmarkIngressHTTP(b *testing.B) {
	for _, linger := range []string{"0s", "1ms", "5ms"} {
		b.Run("linger="+linger, func(b *testing.B) { benchIngress(b, linger, 2000) })
	}
}

func benchIngress(b *testing.B, linger string, conns int) {
	if bin == nil {
		b.Skip("binaries not built (-short)")
	}
	tenants := filepath.Join(b.TempDir(), "tenants.yaml")
	if err := os.WriteFile(tenants, []byte("tenants:\n  - name: bench\n    key_sha256: ["+tenant.HashKey(apptest.DevKey)+"]\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	s := apptest.StartStack(b, bin, apptest.StackOptions{IngressArgs: []string{
		"--tenants", tenants, "--no-admission", "--produce-linger", linger, "--log-level", "warn"}})
	if err := s.Routers[0].Stop(30 * time.Second); err != nil {
		b.Fatal(err)
	}
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, MaxConnsPerHost: conns, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	url := s.IngressURL + "/v1/conversations/%s/messages"
	const body = `{"model":"sim","lane":"batch","messages":[{"role":"user","content":"a benchmark message of a typical short length, about one hundred bytes long"}]}`
	var failMu sync.Mutex
	failures := map[string]int{}
	post := func(conv string) (int, error) {
		req, _ := http.NewRequestWithContext(context.Background(), "POST", fmt.Sprintf(url, conv), strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+apptest.DevKey)
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			failMu.Lock()
			failures[fmt.Sprintf("%d %.120s", resp.StatusCode, b)]++
			failMu.Unlock()
		}
		return resp.StatusCode, nil
	}
	// Open every connection before measuring.
	var wg sync.WaitGroup
	for i := range conns {
		wg.Go(func() { _, _ = post("warm-" + strconv.Itoa(i)) }) // warming only; the measured run counts failures
	}
	wg.Wait()

	pids := map[string]int{"ingress": s.Ingress.PID(), "devbroker": s.Devbroker.PID()}
	cpu0 := procCPU(pids)
	var next, failed atomic.Int64
	hists := make([]*hdrhistogram.Histogram, conns)
	b.ResetTimer()
	start := time.Now()
	for w := range conns {
		hists[w] = hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				t0 := time.Now()
				code, err := post("bench-" + strconv.FormatInt(i%5000, 10))
				if err != nil || code != http.StatusAccepted {
					if err != nil {
						failMu.Lock()
						failures[err.Error()]++
						failMu.Unlock()
					}
					failed.Add(1)
					continue
				}
				_ = hists[w].RecordValue(time.Since(t0).Microseconds())
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	cpu1 := procCPU(pids)
	h := hdrhistogram.New(1, int64(time.Minute/time.Microsecond), 3)
	for _, hh := range hists {
		h.Merge(hh)
	}
	if f := failed.Load(); f > 0 {
		b.Errorf("%d of %d requests failed: %v", f, b.N, failures)
	}
	n := float64(b.N)
	b.ReportMetric(n/elapsed.Seconds(), "req/s")
	b.ReportMetric(float64(h.ValueAtQuantile(50))/1000, "p50-ms")
	b.ReportMetric(float64(h.ValueAtQuantile(99))/1000, "p99-ms")
	b.ReportMetric(float64((cpu1["ingress"]-cpu0["ingress"]).Microseconds())/n, "ingress-cpu-µs/req")
	b.ReportMetric(float64((cpu1["devbroker"]-cpu0["devbroker"]).Microseconds())/n, "broker-cpu-µs/req")
}

// procCPU reads the user+system CPU time of processes from /proc.
func procCPU(pids map[string]int) map[string]time.Duration {
	out := map[string]time.Duration{}
	for name, pid := range pids {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 13 {
			continue
		}
		u, _ := strconv.ParseInt(f[11], 10, 64)
		st, _ := strconv.ParseInt(f[12], 10, 64)
		out[name] = time.Duration(u+st) * time.Second / 100 // USER_HZ
	}
	return out
}
