package telemetry

import (
	"strings"
	"testing"
)

// A password given as a flag is not served by /debug/pprof/cmdline.
func TestRedactArgs(t *testing.T) {
	got := strings.Join(RedactArgs([]string{"ingress", "--kafka-sasl-password", "pw1", "--kafka-sasl-password=pw2", "--brokers", "k:9093",
		"-kafka-sasl-username", "u"}), " ")
	want := "ingress --kafka-sasl-password [redacted] --kafka-sasl-password=[redacted] --brokers k:9093 -kafka-sasl-username u"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
