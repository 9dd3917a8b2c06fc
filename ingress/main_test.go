package main

import (
	"testing"

	"github.com/switchboard-llm/switchboard/internal/daemon"
)

// The low-mark flags default to 0, so the configuration derives them from
// the high marks given (issue 14's batch-lag bug: fixed flag defaults of
// 10000 and 25000 shadowed that).
func TestLagLowMarksFollowHighFlags(t *testing.T) {
	f := daemon.NewFlags("ingress")
	cfg, _ := define(f)
	if err := f.Parse([]string{"--batch-lag-high", "8000", "--interactive-lag-high", "40000"}, nil); err != nil {
		t.Fatal(err)
	}
	a := cfg.Admission
	if a.BatchHigh != 8000 || a.InteractiveHigh != 40000 {
		t.Errorf("high marks %d, %d; want 8000, 40000", a.BatchHigh, a.InteractiveHigh)
	}
	if a.BatchLow != 0 || a.InteractiveLow != 0 {
		t.Errorf("low marks %d, %d without their flags; want 0 (half the high mark, set by the configuration)", a.BatchLow, a.InteractiveLow)
	}
	if cfg.GRPCAddr != "127.0.0.1:8083" || cfg.Addr != "127.0.0.1:8080" {
		t.Errorf("listen defaults %q, %q; want 127.0.0.1:8080 and gRPC 127.0.0.1:8083", cfg.Addr, cfg.GRPCAddr)
	}
}
