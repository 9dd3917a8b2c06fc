package stack

import (
	"strings"
	"testing"
)

func TestParseInstances(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Instances
		err  string // a part of the error; empty: no error
	}{
		{in: "", want: Instances{}},
		{in: "ingress=2,router-worker=3,egress=2", want: Instances{Ingress: 2, Router: 3, Egress: 2}},
		{in: " egress = 4 , ingress=1", want: Instances{Ingress: 1, Egress: 4}},
		{in: "router-worker=16", want: Instances{Router: 16}},
		{in: "router-worker=17", err: "not between 1 and 16"},
		{in: "ingress=0", err: "not between 1 and 16"},
		{in: "ingress=-1", err: "not between 1 and 16"},
		{in: "ingress=two", err: `count "two" is not a whole number`},
		{in: "ingress=2.5", err: "not a whole number"},
		{in: "routers=2", err: `unknown service "routers" (have ingress, router-worker, egress)`},
		{in: "modelsim=2", err: "unknown service"},
		{in: "ingress", err: "want service=count"},
		{in: "ingress=", err: "want service=count"},
		{in: "=2", err: "want service=count"},
		{in: "ingress=2,,egress=2", err: "want service=count"},
		{in: "ingress=2,ingress=3", err: "ingress given twice"},
	} {
		got, err := ParseInstances(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseInstances(%q) = %+v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseInstances(%q) = %+v, %v; want %+v", tc.in, got, err, tc.want)
		}
	}
}

func TestInstancesRoundTrip(t *testing.T) {
	in := Instances{Ingress: 2, Router: 3}
	if got, want := in.String(), "ingress=2,router-worker=3,egress=1"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
	back, err := ParseInstances(in.String())
	if err != nil || back != (Instances{Ingress: 2, Router: 3, Egress: 1}) {
		t.Errorf("ParseInstances(String()) = %+v, %v", back, err)
	}
	var cfg Config
	back.Apply(&cfg)
	if cfg.Ingresses != 2 || cfg.Routers != 3 || cfg.Egresses != 1 {
		t.Errorf("Apply: %d/%d/%d, want 2/3/1", cfg.Ingresses, cfg.Routers, cfg.Egresses)
	}
}

func TestValidateInstances(t *testing.T) {
	err := (Config{Bin: t.TempDir(), Dir: t.TempDir(), Ingresses: MaxInstances + 1}).Validate()
	if err == nil || !strings.Contains(err.Error(), "ingress instances") {
		t.Errorf("too many ingress instances: err = %v", err)
	}
}

func TestBinaryOfInstances(t *testing.T) {
	for name, want := range map[string]string{
		"router-worker": "router-worker", "router-worker-3": "router-worker", "egress-2": "egress",
		"ingress-12": "ingress", "ingress": "ingress", "modelsim": "modelsim", "devbroker": "devbroker",
	} {
		if got := binaryOf(name); got != want {
			t.Errorf("binaryOf(%q) = %q, want %q", name, got, want)
		}
	}
}
