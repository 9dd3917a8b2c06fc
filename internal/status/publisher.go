package status

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
)

// DefaultInterval is how often a publisher writes its record.
const DefaultInterval = 2 * time.Second

// Publisher writes one instance's status record to the status topic every
// Interval, and a tombstone for its key when it stops.
type Publisher struct {
	// Opts reach the cluster (the service's connection options).
	Opts []kgo.Opt
	// Topic is the status topic's full name.
	Topic string
	// Service and Instance make the key (see Key). Instance defaults to
	// DefaultInstance().
	Service, Instance string
	// Interval is how often the record is written. Default
	// DefaultInterval.
	Interval time.Duration
	// Fill fills the service's section (Router or Ingress) of a record
	// whose other fields are set. It is called from Run's goroutine.
	Fill func(*Record)
	// Logger receives warnings (at most one a minute). Default
	// slog.Default().
	Logger *slog.Logger
}

// DefaultInstance names this process: its host name and process ID.
func DefaultInstance() string {
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", cmp.Or(host, "host"), os.Getpid())
}

// Run publishes until ctx is done, then writes the tombstone (waiting at
// most 5s) if a record was published. A record Kafka does not take is logged and the next interval
// tries again: status is best effort and never stops the service.
func (p *Publisher) Run(ctx context.Context) error {
	iv := cmp.Or(p.Interval, DefaultInterval)
	instance := cmp.Or(p.Instance, DefaultInstance())
	log := cmp.Or(p.Logger, slog.Default())
	cl, err := kgo.NewClient(append(p.Opts, kgo.DefaultProduceTopic(p.Topic), kgo.ProducerLinger(0),
		kgo.MaxBufferedRecords(4))...)
	if err != nil {
		return fmt.Errorf("status: client: %w", err)
	}
	defer cl.Close()
	key := []byte(Key(p.Service, instance))
	var lastWarn time.Time
	published := false // a tombstone is only needed after a record
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		r := &Record{Service: p.Service, Instance: instance, At: time.Now().UTC(), IntervalMS: iv.Milliseconds()}
		p.Fill(r)
		v, err := Encode(r)
		if err == nil {
			pctx, cancel := context.WithTimeout(ctx, max(iv, 5*time.Second))
			err = cl.ProduceSync(pctx, &kgo.Record{Key: key, Value: v,
				Headers: []kgo.RecordHeader{{Key: "content-type", Value: []byte("application/json")}}}).FirstErr()
			cancel()
			published = published || err == nil
		}
		if err != nil && ctx.Err() == nil && time.Since(lastWarn) > time.Minute {
			log.Warn("could not publish the status record (the console shows it stale)", "topic", p.Topic, "err", err)
			lastWarn = time.Now()
		}
		select {
		case <-ctx.Done():
			if !published {
				return nil
			}
			tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if err := cl.ProduceSync(tctx, &kgo.Record{Key: key}).FirstErr(); err != nil {
				log.Warn("could not write the status tombstone", "topic", p.Topic, "err", err)
			}
			return nil
		case <-t.C:
		}
	}
}
