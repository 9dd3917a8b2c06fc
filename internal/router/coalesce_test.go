package router

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestCoalescerBySize(t *testing.T) {
	var got []string
	c := &coalescer{interval: time.Hour, size: 4, flush: func(s string) { got = append(got, s) }}
	for _, d := range []string{"0", "a", "bc", "d", "e", "fghij", "k"} {
		c.add(d)
	}
	c.close()
	if want := []string{"0", "abcd", "efghij", "k"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("chunks = %q, want %q", got, want)
	}
}

// TestCoalescerByTime: the first delta is flushed at once; later text
// interval after its first byte arrived, even when no further delta comes
// to trigger it.
func TestCoalescerByTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var got []string
		var at []time.Duration
		start := time.Now()
		c := &coalescer{interval: 50 * time.Millisecond, size: 1 << 20, flush: func(s string) {
			got = append(got, s)
			at = append(at, time.Since(start))
		}}
		c.add("first")
		time.Sleep(5 * time.Millisecond)
		c.add("a")
		time.Sleep(10 * time.Millisecond)
		c.add("b")
		time.Sleep(time.Second) // a pause in the stream
		c.add("c")
		time.Sleep(20 * time.Millisecond)
		c.close()
		c.add("late") // ignored after close
		time.Sleep(time.Second)
		if want := []string{"first", "ab", "c"}; strings.Join(got, "|") != strings.Join(want, "|") {
			t.Errorf("chunks = %q, want %q", got, want)
		}
		if want := []time.Duration{0, 55 * time.Millisecond, 1035 * time.Millisecond}; len(at) != 3 || at[0] != want[0] || at[1] != want[1] || at[2] != want[2] {
			t.Errorf("flushed at %v, want %v (the first delta at once; then 50ms after the first byte; the rest at close)", at, want)
		}
	})
}

func TestRepositoryBackendsFileLoads(t *testing.T) {
	t.Setenv("SWITCHBOARD_MODELSIM_URL", "")
	rt, err := LoadBackends("../../backends.yaml")
	if err != nil {
		t.Fatal(err)
	}
	bs := rt.Backends
	if bs[0].Name != "modelsim" || bs[0].BaseURL != "http://127.0.0.1:8090/v1" {
		t.Errorf("backends = %+v, want modelsim on :8090 by default", bs)
	}
}
