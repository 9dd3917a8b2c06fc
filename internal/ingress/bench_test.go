package ingress

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

// BenchmarkHandleMessage runs the whole HTTP path in process (decode,
// checks, produce to kfake, the acknowledgement, the JSON answer) without
// the network, to profile ingress's own cost per request:
//
//	go test -run '^$' -bench BenchmarkHandleMessage -cpuprofile cpu.out ./internal/ingress/
func BenchmarkHandleMessage(b *testing.B) {
	in := newIngress(b, newCluster(b), nil)
	h := in.Handler()
	const body = `{"model":"sim","lane":"batch","messages":[{"role":"user","content":"a benchmark message of a typical short length, about one hundred bytes long"}]}`
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(64)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req := httptest.NewRequest("POST", "/v1/conversations/bench-"+strconv.FormatInt(n.Add(1)%5000, 10)+"/messages", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+devKey)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusAccepted {
				b.Fatalf("status %d: %s", rec.Code, rec.Body)
			}
		}
	})
}
