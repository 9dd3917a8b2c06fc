package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

func TestFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	none := func(string) string { return "" }
	if err := run(t.Context(), []string{"--help"}, none, &out, &errOut); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: err = %v, want flag.ErrHelp", err)
	}
	if !strings.Contains(errOut.String(), "-execute") {
		t.Errorf("usage does not list --execute:\n%s", errOut.String())
	}
	if err := run(t.Context(), []string{"extra"}, none, &out, &errOut); err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("stray argument: err = %v", err)
	}
	if err := run(t.Context(), []string{"--limit", "-1"}, none, &out, &errOut); err == nil {
		t.Error("negative --limit accepted")
	}
}

// An empty dead-letter topic: the run ends at once and says so.
func TestRunOnEmptyTopic(t *testing.T) {
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, spec.Name(topicspec.DeadLetter)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	env := func(k string) string {
		if k == "SWITCHBOARD_BROKERS" {
			return strings.Join(c.ListenAddrs(), ",")
		}
		return ""
	}
	var out, errOut bytes.Buffer
	if err := run(t.Context(), []string{"--timeout", "20s"}, env, &out, &errOut); err != nil {
		t.Fatalf("run: %v\n%s", err, errOut.String())
	}
	if out.Len() != 0 || !strings.Contains(errOut.String(), "read 0 dead letters") {
		t.Errorf("stdout %q, stderr %q; want no lines and a summary of 0", out.String(), errOut.String())
	}
}
