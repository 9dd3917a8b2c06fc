package router

import (
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/modelsim"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// BenchmarkProcess runs router-worker's handling of one request record
// (what the key-ordered engine calls for each): decode, checks, tenant and
// backend admission, the call to an OpenAI-compatible backend that answers
// at once (modelsim with no latency, over loopback HTTP), the result
// records and the wait for their acknowledgement by an in-process kfake.
// Many requests run at once, as in the engine, so that the producer
// batches as it does under load; ns/op is wall time per request on this
// machine's cores, broker and backend included.
//
//	go test -run '^$' -bench BenchmarkProcess -benchmem ./internal/router/
func BenchmarkProcess(b *testing.B) {
	for _, stream := range []bool{false, true} {
		name := "final"
		if stream {
			name = "stream"
		}
		b.Run(name, func(b *testing.B) { benchProcess(b, stream) })
	}
}

func benchProcess(b *testing.B, stream bool) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, interactive, batch, results, deadletter))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	sim, err := modelsim.New(modelsim.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(sim.Handler())
	b.Cleanup(srv.Close)
	spec, err := topicspec.Load("")
	if err != nil {
		b.Fatal(err)
	}
	r, err := New(Config{
		Kafka:  kafkaconf.Config{Brokers: c.ListenAddrs()},
		Topics: spec,
		Routing: Routing{Backends: []Backend{{Name: "sim", BaseURL: srv.URL + "/v1", Models: []string{"sim"},
			MaxConcurrency: 1024, Timeout: 10 * time.Second}}},
		ProduceLinger: time.Microsecond,
		Logger:        slog.New(slog.DiscardHandler),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(r.Close)
	var n atomic.Int64
	next := func() *kgo.Record {
		i := int(n.Add(1))
		rec, err := envelope.EncodeRequest(interactive, request(fmt.Sprintf("conv-%d", i%1000), i, stream))
		if err != nil {
			b.Fatal(err)
		}
		rec.Partition, rec.Offset, rec.Timestamp = int32(i%4), int64(i), time.Now()
		return rec
	}
	// Warm the connections (backend, broker, metadata) outside the timing.
	if err := r.process(context.Background(), next()); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(8)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := r.process(context.Background(), next()); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
