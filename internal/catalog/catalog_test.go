package catalog

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestPublishedListReachesTheWatcher(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "models"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	opts := []kgo.Opt{kgo.SeedBrokers(c.ListenAddrs()...)}
	var w Watcher
	if !w.Allows("anything") || w.Known() {
		t.Fatal("a watcher without a list must allow every model")
	}
	if err := Publish(t.Context(), opts, "models", []string{"b", "a", "b"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, opts, "models", slog.New(slog.DiscardHandler)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	waitKnown := func(model string, want bool) {
		t.Helper()
		for i := 0; w.Allows(model) != want || !w.Known(); i++ {
			if i == 200 {
				t.Fatalf("Allows(%q) = %v after 10 s, want %v", model, w.Allows(model), want)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	waitKnown("a", true)
	if w.Allows("c") {
		t.Error("a model the list does not name is allowed")
	}
	// A newer list replaces it.
	if err := Publish(t.Context(), opts, "models", []string{"c"}); err != nil {
		t.Fatal(err)
	}
	waitKnown("a", false)
	if !w.Allows("c") {
		t.Error("the newer list's model is refused")
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, rec := range []*kgo.Record{
		{Key: []byte("other"), Value: []byte(`{"models":["a"]}`)},
		{Key: []byte(Key), Value: []byte(`{"models":`)},
		{Key: []byte(Key), Value: []byte(`{"models":[]}`)},
	} {
		if _, err := Decode(rec); err == nil {
			t.Errorf("Decode(%q, %q) = nil error", rec.Key, rec.Value)
		}
	}
	l, err := Decode(Record("t", []string{"z", "a"}, time.Unix(0, 0)))
	if err != nil || len(l.Models) != 2 || l.Models[0] != "a" {
		t.Errorf("round trip = %+v, %v", l, err)
	}
}
