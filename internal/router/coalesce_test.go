package router

import (
	"strings"
	"testing"
	"time"
)

func TestCoalescerBySize(t *testing.T) {
	var got []string
	c := coalescer{interval: time.Hour, size: 4, flush: func(s string) { got = append(got, s) }}
	for _, d := range []string{"a", "bc", "d", "e", "fghij", "k"} {
		c.add(d)
	}
	c.close()
	if want := []string{"abcd", "efghij", "k"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("chunks = %q, want %q", got, want)
	}
}

func TestCoalescerByTime(t *testing.T) {
	var got []string
	c := coalescer{interval: time.Nanosecond, size: 1 << 20, flush: func(s string) { got = append(got, s) }}
	c.add("a")
	time.Sleep(time.Millisecond)
	c.add("b")
	c.close()
	if strings.Join(got, "") != "ab" || len(got) < 2 {
		t.Errorf("chunks = %q, want each delta flushed once its interval passed", got)
	}
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
