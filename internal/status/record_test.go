package status

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func routerRecord() *Record {
	return &Record{Service: ServiceRouter, Instance: "w-1", At: time.Date(2026, 12, 4, 12, 0, 0, 0, time.UTC), IntervalMS: 2000,
		Router: &Router{Group: "g", InFlight: 1, MaxInFlight: 8, System: BreakerClosed,
			Partitions:    map[string][]int32{"requests.interactive": {0, 2}},
			Conversations: []Conversation{{ID: "c1", Topic: "requests.interactive", Partition: 2, Offset: 7}},
			Backends:      []Backend{{Name: "sim", Models: []string{"sim"}, Breaker: BreakerOpen, MaxConcurrency: 4, P99MS: 12.5}}}}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	r := routerRecord()
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Decode([]byte("router-worker/w-1"), b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Router.Backends[0].Breaker != BreakerOpen || got.Router.Conversations[0].Offset != 7 || got.Version != Version || got.Truncated {
		t.Errorf("got %+v, want the record back", got.Router)
	}
}

// TestEncodeBoundsSize: a record with many long conversations and
// backends is cut to MaxBytes, and says so.
func TestEncodeBoundsSize(t *testing.T) {
	r := routerRecord()
	for i := range 500 {
		r.Router.Conversations = append(r.Router.Conversations, Conversation{ID: strings.Repeat("x", 1000) + fmt.Sprint(i)})
		r.Router.Backends = append(r.Router.Backends, Backend{Name: strings.Repeat("b", 300), Models: []string{strings.Repeat("m", 150)}})
	}
	b, err := Encode(r)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > MaxBytes {
		t.Errorf("encoded %d bytes, want at most %d", len(b), MaxBytes)
	}
	got, err := Decode([]byte(r.Key()), b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Truncated || len(got.Router.Conversations) > MaxConversations || len(got.Router.Backends) > MaxBackends {
		t.Errorf("truncated %v, %d conversations, %d backends; want truncated and bounded", got.Truncated,
			len(got.Router.Conversations), len(got.Router.Backends))
	}
	for _, c := range got.Router.Conversations {
		if len(c.ID) > maxString {
			t.Errorf("conversation ID of %d bytes, want at most %d", len(c.ID), maxString)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good, _ := Encode(routerRecord())
	ingress := `{"v":1,"service":"ingress","instance":"i","at":"2026-12-04T12:00:00Z","ingress":{"admission":true}}`
	for _, tc := range []struct {
		name, key, value string
		want             string
	}{
		{"not json", "router-worker/w-1", "{", "decode"},
		{"trailing data", "router-worker/w-1", string(good) + "{}", "data after"},
		{"other version", "ingress/i", strings.Replace(ingress, `"v":1`, `"v":2`, 1), "version"},
		{"unknown service", "x/i", strings.Replace(ingress, `"service":"ingress"`, `"service":"x"`, 1), "unknown service"},
		{"wrong key", "ingress/j", ingress, "key"},
		{"no time", "ingress/i", strings.Replace(ingress, `"at":"2026-12-04T12:00:00Z",`, "", 1), "no time"},
		{"wrong section", "ingress/i", strings.Replace(ingress, `"ingress":{`, `"router":{`, 1), "section"},
		{"too large", "ingress/i", ingress[:len(ingress)-1] + `,"pad":"` + strings.Repeat("p", MaxBytes) + `"}`, "more than"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Decode([]byte(tc.key), []byte(tc.value))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("got %v, want an error with %q", err, tc.want)
			}
		})
	}
	if _, err := Decode([]byte("ingress/i"), []byte(ingress)); err != nil {
		t.Errorf("the valid ingress record: %v", err)
	}
	if _, err := Decode([]byte("ingress/i"), nil); !errors.Is(err, ErrTombstone) {
		t.Errorf("tombstone: got %v, want ErrTombstone", err)
	}
}

func TestStale(t *testing.T) {
	r := routerRecord()
	if r.Stale(r.At.Add(5 * time.Second)) {
		t.Error("a record 5s old with a 2s interval is stale, want fresh")
	}
	if !r.Stale(r.At.Add(7 * time.Second)) {
		t.Error("a record 7s old with a 2s interval is fresh, want stale")
	}
}

func TestWindow(t *testing.T) {
	w := NewWindow(time.Minute)
	now := time.Now()
	w.Observe("a", now.Add(-2*time.Minute), time.Hour, true) // outside the span
	for i := 1; i <= 100; i++ {
		w.Observe("a", now, time.Duration(i)*time.Millisecond, i == 100)
	}
	calls, failures, p50, p99 := w.Stats("a", now)
	if calls != 100 || failures != 1 || p50 != 50 || p99 != 99 {
		t.Errorf("got calls %d failures %d p50 %v p99 %v, want 100 1 50 99", calls, failures, p50, p99)
	}
	if c, _, _, _ := w.Stats("b", now); c != 0 {
		t.Errorf("unknown name: %d calls, want 0", c)
	}
}

func TestTracker(t *testing.T) {
	var tr Tracker
	now := time.Now()
	done1 := tr.Start(Conversation{ID: "new", Since: now})
	tr.Start(Conversation{ID: "old", Since: now.Add(-time.Second)})
	n, cs := tr.Snapshot(1)
	if n != 2 || len(cs) != 1 || cs[0].ID != "old" {
		t.Errorf("got %d %v, want 2 and the oldest", n, cs)
	}
	done1()
	if n, _ := tr.Snapshot(5); n != 1 {
		t.Errorf("after done: %d in flight, want 1", n)
	}
}
