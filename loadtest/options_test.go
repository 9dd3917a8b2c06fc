package main

import (
	"slices"
	"strings"
	"testing"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// More router-workers than the requests topics have partitions are refused:
// the extra ones would get nothing to do.
func TestCheckRouters(t *testing.T) {
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	most := int32(0)
	for _, tp := range spec.Topics {
		if tp.Name == topicspec.RequestsInteractive || tp.Name == topicspec.RequestsBatch {
			most = max(most, tp.Partitions)
		}
	}
	if err := checkRouters(int(most), spec); err != nil {
		t.Errorf("%d router-workers on %d partitions: %v", most, most, err)
	}
	if err := checkRouters(0, spec); err != nil {
		t.Errorf("the default: %v", err)
	}
	err = checkRouters(int(most)+1, spec)
	if err == nil || !strings.Contains(err.Error(), "partitions of the requests topics") {
		t.Errorf("%d router-workers on %d partitions: err = %v, want one naming the partitions", most+1, most, err)
	}
}

// --overload-factors takes a comma-separated list of numbers and refuses
// anything else.
func TestOverloadFactorsFlag(t *testing.T) {
	f := daemon.NewFlags("loadtest")
	o := newOptions(f)
	if err := f.Parse([]string{"--overload-factors", "1, 1.5,2"}, nil); err != nil {
		t.Fatal(err)
	}
	if got := o.params.OverloadFactors; !slices.Equal(got, []float64{1, 1.5, 2}) {
		t.Errorf("factors = %v, want [1 1.5 2]", got)
	}
	if err := f.Parse([]string{"--overload-factors", "1,x"}, nil); err == nil {
		t.Error("--overload-factors 1,x accepted")
	}
}
