package router

import (
	"bytes"
	"context"
	"os"
	"time"
)

// Reload reads the backends file again and applies it without stopping:
// calls in flight finish on the backends they started on, new calls use
// the new configuration, and backends whose connection settings did not
// change keep their connections, breakers and limiter state. A file that
// does not load or validate is rejected with the error and the running
// configuration stays.
func (r *Router) Reload() error {
	_, err := r.reload()
	return err
}

// reload is Reload, returning the routing it applied.
func (r *Router) reload() (Routing, error) {
	if r.cfg.BackendsFile == "" {
		return r.cfg.Routing, nil
	}
	rt, err := LoadBackends(r.cfg.BackendsFile)
	if err == nil {
		err = r.bal.apply(rt)
	}
	if err != nil {
		r.metrics.reloads.WithLabelValues("error").Inc()
		r.log.Error("backends file rejected; the running configuration stays", "file", r.cfg.BackendsFile, "err", err)
		return Routing{}, err
	}
	r.metrics.reloads.WithLabelValues("ok").Inc()
	r.log.Info("backends file reloaded", "file", r.cfg.BackendsFile, "backends", len(rt.Backends))
	return rt, nil
}

// watch reloads the backends file on ReloadSignal and when its content
// changes (polled every ReloadInterval: polling also sees files replaced
// by rename, as editors and Kubernetes config maps do). It returns when
// ctx is done.
func (r *Router) watch(ctx context.Context) {
	// Publishing waits for the broker: it runs beside the reloads, the
	// latest routing first, and ends with ctx.
	publish := make(chan Routing, 1)
	published := make(chan struct{})
	go func() {
		defer close(published)
		for {
			select {
			case <-ctx.Done():
				return
			case rt := <-publish:
				r.publishModels(ctx, rt)
			}
		}
	}()
	defer func() { <-published }()
	latest := func(rt Routing) {
		select {
		case <-publish: // replaced by the newer one
		default:
		}
		publish <- rt
	}
	latest(r.cfg.Routing)
	if r.cfg.BackendsFile == "" {
		<-ctx.Done()
		return
	}
	last, _ := os.ReadFile(r.cfg.BackendsFile)
	var tick <-chan time.Time // nil: no polling
	if r.cfg.ReloadInterval > 0 {
		t := time.NewTicker(r.cfg.ReloadInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.cfg.ReloadSignal:
			last, _ = os.ReadFile(r.cfg.BackendsFile)
			if rt, err := r.reload(); err == nil {
				latest(rt)
			}
		case <-tick:
			data, err := os.ReadFile(r.cfg.BackendsFile)
			if err != nil || bytes.Equal(data, last) {
				continue // a missing file is reported by the next signal or change
			}
			last = data
			if rt, err := r.reload(); err == nil {
				latest(rt)
			}
		}
	}
}

// systemChanged pauses fetching the requests topics while the system
// breaker is open, so that messages wait in Kafka instead of failing, and
// resumes it when a backend has recovered. The engine's own per-partition
// pauses are independent of these topic pauses (see kgo.PauseFetchTopics).
func (r *Router) systemChanged(open bool) {
	if r.client == nil {
		return
	}
	if open {
		r.log.Warn("every backend's circuit breaker is open: consumption paused until one recovers")
		r.client.PauseFetchTopics(r.topics...)
		return
	}
	r.log.Info("a backend recovered: consumption resumed")
	r.client.ResumeFetchTopics(r.topics...)
}
