package client_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/modelsim"
	"github.com/switchboard-llm/switchboard/internal/router"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// pipeline is what answers requests in these tests and the examples, in
// process: a kfake cluster with Switchboard's topics (4 partitions each),
// modelsim behind an HTTP server, and router-worker's service.
type pipeline struct {
	brokers []string
	cluster *kfake.Cluster
	stop    func() error
}

// startPipeline starts a pipeline; mod, when set, changes the router's
// configuration (e.g. its results encoding). stop ends it and returns the
// router's error.
func startPipeline(mod func(*router.Config)) (*pipeline, error) {
	spec, err := topicspec.Load("")
	if err != nil {
		return nil, err
	}
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, spec.Names()...))
	if err != nil {
		return nil, err
	}
	sim, err := modelsim.New(modelsim.Config{}, slog.New(slog.DiscardHandler))
	if err != nil {
		cluster.Close()
		return nil, err
	}
	srv := httptest.NewServer(sim.Handler())
	cfg := router.Config{
		Kafka:   kafkaconf.Config{Brokers: cluster.ListenAddrs()},
		Topics:  spec,
		Routing: router.Routing{Backends: []router.Backend{{Name: "sim", BaseURL: srv.URL + "/v1", Models: []string{"sim"}, Timeout: 10 * time.Second}}},
		Logger:  slog.New(slog.DiscardHandler),
	}
	if mod != nil {
		mod(&cfg)
	}
	r, err := router.New(cfg)
	if err != nil {
		srv.Close()
		cluster.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	p := &pipeline{brokers: cluster.ListenAddrs(), cluster: cluster}
	p.stop = func() error {
		cancel()
		var err error
		select {
		case err = <-done:
		case <-time.After(30 * time.Second):
			err = errors.New("router did not stop within 30s")
		}
		srv.Close()
		cluster.Close()
		if errors.Is(err, context.Canceled) {
			err = nil
		}
		if err != nil {
			return fmt.Errorf("router: %w", err)
		}
		return nil
	}
	return p, nil
}
