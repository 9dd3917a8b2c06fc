package ingress

import (
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/switchboard-llm/switchboard/internal/status"
)

// TestAdmissionStatus: the status record's lanes carry admission's state:
// shedding, the lag that drives each lane (batch: the total) and the marks.
func TestAdmissionStatus(t *testing.T) {
	cfg := AdmissionConfig{BatchHigh: 100, BatchLow: 50, InteractiveHigh: 200, InteractiveLow: 100}
	cfg.setDefaults()
	a := newAdmission(cfg, map[string]string{"interactive": "switchboard.requests.interactive", "batch": "switchboard.requests.batch"},
		slog.New(slog.DiscardHandler), newMetrics(prometheus.NewRegistry(), func() float64 { return 0 }))
	a.observe(time.Unix(1, 0), lagOf(60, 0, 41, 0))
	got := a.status("g")
	want := []status.Lane{
		{Lane: "interactive", Lag: 60, High: 200, Low: 100},
		{Lane: "batch", Shedding: true, Lag: 101, High: 100, Low: 50},
	}
	if !got.Admission || got.Group != "g" || len(got.Lanes) != 2 || got.Lanes[0] != want[0] || got.Lanes[1] != want[1] {
		t.Errorf("got %+v, want admission on, group g, lanes %+v", got, want)
	}
	var off *admission
	if s := off.status("g"); s.Admission || len(s.Lanes) != 0 {
		t.Errorf("admission off: got %+v, want off and no lanes", s)
	}
}
