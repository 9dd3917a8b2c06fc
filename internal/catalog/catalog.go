// Package catalog tells ingress which models the router-workers serve, so
// that a request for a model no backend serves is refused at the door (400)
// instead of being accepted and dead-lettered. The router-workers publish
// the models of their backends file (served models and aliases) to the
// compacted models topic under one key at start and after every reload;
// ingress reads that topic from its start and keeps the latest list. The
// services still never call each other: the list travels through Kafka.
//
// All router-workers of a deployment share one backends file, so the last
// published list is the deployment's. While no list has been read (a new
// cluster, or a topics file without the models topic), ingress accepts
// every model and the router dead-letters unknown ones as before.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// Key is the record key of the published list.
const Key = "models"

// List is the value of a published record.
type List struct {
	// Models are the model names requests may ask for: served models and
	// aliases, sorted.
	Models []string `json:"models"`
	// PublishedAt is when the list was published.
	PublishedAt time.Time `json:"published_at"`
}

// Record returns the record that publishes models to topic.
func Record(topic string, models []string, now time.Time) *kgo.Record {
	m := slices.Clone(models)
	slices.Sort(m)
	m = slices.Compact(m)
	v, _ := json.Marshal(List{Models: m, PublishedAt: now.UTC()}) // a List always marshals
	return &kgo.Record{Topic: topic, Key: []byte(Key), Value: v}
}

// Decode reads a published record.
func Decode(rec *kgo.Record) (List, error) {
	var l List
	if string(rec.Key) != Key {
		return l, fmt.Errorf("catalog: record key %q is not %q", rec.Key, Key)
	}
	if err := json.Unmarshal(rec.Value, &l); err != nil {
		return l, fmt.Errorf("catalog: decode: %w", err)
	}
	if len(l.Models) == 0 {
		return l, errors.New("catalog: the list names no model")
	}
	return l, nil
}

// Publish writes models to topic and waits for the broker's answer (at
// most 10 s). opts reach the cluster; a short-lived client of its own is
// used, so a transactional producer never has to carry the record.
func Publish(ctx context.Context, opts []kgo.Opt, topic string, models []string) error {
	cl, err := kgo.NewClient(append(opts, kgo.RequiredAcks(kgo.AllISRAcks()))...)
	if err != nil {
		return fmt.Errorf("catalog: client: %w", err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := cl.ProduceSync(ctx, Record(topic, models, time.Now())).FirstErr(); err != nil {
		return fmt.Errorf("catalog: publish to %s: %w", topic, err)
	}
	return nil
}

// Watcher holds the latest published list. The zero value knows no list
// and allows every model.
type Watcher struct {
	mu     sync.RWMutex
	models map[string]bool // nil until a list was read
	list   List            // the latest list read
}

// Allows reports whether a request may ask for model: true when the
// latest list names it or no list has been read.
func (w *Watcher) Allows(model string) bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.models == nil || w.models[model]
}

// Known reports whether a list has been read.
func (w *Watcher) Known() bool {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.models != nil
}

// Set installs a list.
func (w *Watcher) Set(l List) {
	m := make(map[string]bool, len(l.Models))
	for _, name := range l.Models {
		m[name] = true
	}
	w.mu.Lock()
	w.models, w.list = m, l
	w.mu.Unlock()
}

// Latest returns the latest list read (its Models sorted, as published)
// and whether one was read.
func (w *Watcher) Latest() (List, bool) {
	w.mu.RLock()
	defer w.mu.RUnlock()
	return w.list, w.models != nil
}

// Run reads topic from its start with a client made from opts (no
// consumer group) and installs every list it reads, until ctx is done.
// Records it cannot read are logged and skipped.
func (w *Watcher) Run(ctx context.Context, opts []kgo.Opt, topic string, log *slog.Logger) error {
	cl, err := kgo.NewClient(append(opts, kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))...)
	if err != nil {
		return fmt.Errorf("catalog: client: %w", err)
	}
	defer cl.Close()
	for {
		fetches := cl.PollFetches(ctx)
		if ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(t string, p int32, err error) {
			log.Warn("reading the models catalog", "topic", t, "partition", p, "err", err)
		})
		fetches.EachRecord(func(rec *kgo.Record) {
			l, err := Decode(rec)
			if err != nil {
				log.Warn("skipping a models catalog record", "offset", rec.Offset, "err", err)
				return
			}
			w.Set(l)
			log.Info("models catalog read", "models", len(l.Models), "published_at", l.PublishedAt)
		})
	}
}
