package egress

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// The live path's pieces in isolation (BenchmarkSSEFanOut measures them
// together, over loopback HTTP):
//
//	go test -run '^$' -bench 'BenchmarkHubPublish|BenchmarkSSEEvent' -benchmem ./internal/egress/

// benchChunk is a streamed chunk record of conversation conv.
func benchChunk(b *testing.B, conv string) *kgo.Record {
	b.Helper()
	rec, err := envelope.EncodeResult("switchboard.results", &pb.Result{RequestId: "r-" + conv, ConversationId: conv, Attempt: 1,
		Metadata: map[string]string{"loadtest_id": "lt-1"},
		Body:     &pb.Result_Chunk{Chunk: &pb.Chunk{Index: 3, Delta: strings.Repeat("token ", 8)}}})
	if err != nil {
		b.Fatal(err)
	}
	rec.Timestamp = time.Now()
	return rec
}

// BenchmarkHubPublish: one result record through the hub (decode, index
// disabled, routing) to the mailboxes of its conversation's subscribers,
// with 1,000 other conversations subscribed; the mailboxes are drained as
// a stream's goroutine would.
func BenchmarkHubPublish(b *testing.B) {
	for _, subs := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("%dsubs", subs), func(b *testing.B) {
			h := newHub(newMetrics(prometheus.NewRegistry()), nil)
			h.start(map[int32]int64{0: 0}, time.Time{}, time.Time{})
			for i := range 1000 {
				h.subscribe(fmt.Sprintf("other-%d", i), 0, 16, 0)
			}
			var mine []*subscriber
			for range subs {
				s, _, _, _ := h.subscribe("conv", 0, 16, 0)
				mine = append(mine, s)
			}
			rec := benchChunk(b, "conv")
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				rec.Offset = int64(i)
				h.publish(rec)
				for _, s := range mine {
					<-s.ch
				}
			}
		})
	}
}

// discardWriter is an http.ResponseWriter and Flusher that keeps nothing.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(int)             {}
func (w *discardWriter) Flush()                      {}

// BenchmarkSSEEvent: one result written as a Server-Sent Event: "first"
// encodes its JSON (the first subscriber of a record pays it), "shared"
// reuses it (every other subscriber of the conversation).
func BenchmarkSSEEvent(b *testing.B) {
	res, err := envelope.DecodeResult(benchChunk(b, "conv"))
	if err != nil {
		b.Fatal(err)
	}
	w := &discardWriter{h: http.Header{}}
	sink := &sseSink{ctx: context.Background(), w: w, flusher: w, rc: http.NewResponseController(w), timeout: time.Second}
	v := view{timings: true}
	for _, shared := range []bool{false, true} {
		name := "first"
		if shared {
			name = "shared"
		}
		b.Run(name, func(b *testing.B) {
			ev := event{partition: 0, offset: 42, res: res, json: &lazyJSON{res: res}}
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if !shared {
					ev.json = &lazyJSON{res: res}
				}
				if err := sink.event("0:42", "chunk", ev, v); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
