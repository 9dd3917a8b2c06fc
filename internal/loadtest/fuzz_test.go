package loadtest

import (
	"strings"
	"testing"
	"time"
)

// FuzzParseSSE feeds arbitrary bytes to the event-stream parser and the
// event decoder the SSE reader uses: neither may panic, and every answer
// decoded carries a loadtest ID.
func FuzzParseSSE(f *testing.F) {
	f.Add(": conversation c on partition 7\n\nid: 7:0\nevent: chunk\ndata: {\"request_id\":\"r\",\"metadata\":{\"loadtest_id\":\"x\"},\"chunk\":{\"index\":0,\"delta\":\"a\"}}\n\n")
	f.Add("id: 7:1\nevent: result\ndata: {\"request_id\":\"r\",\"metadata\":{\"loadtest_id\":\"x\"},\"final\":{\"timings\":{\"dispatched_at\":\"2026-01-01T00:00:00Z\",\"completed_at\":\"2026-01-01T00:00:01Z\"}}}\n\n")
	f.Add("event: error\ndata: {\"request_id\":\"r\",\"metadata\":{\"loadtest_id\":\"x\"},\"error\":{\"code\":\"unknown_model\"}}\n\n")
	f.Add("event: end\ndata: {\"reason\":\"shutdown\",\"cursor\":\"7:1\"}\n\n")
	f.Add("data: a\ndata: b\n\nevent:result\ndata:{}\n\n")
	f.Fuzz(func(t *testing.T, in string) {
		_ = parseSSE(strings.NewReader(in), func(id, name, data string) {
			if a, ok := decodeEvent(name, data, time.Now()); ok && a.ID == "" {
				t.Errorf("answer without an ID from %q", data)
			}
		})
	})
}
