package main

import (
	"bytes"
	"testing"
)

func TestPrefixWriterWritesWholeLines(t *testing.T) {
	var out bytes.Buffer
	p := &prefixOut{w: &out}
	a, b := p.For("a"), p.For("b")
	_, _ = a.Write([]byte("one "))
	_, _ = b.Write([]byte("two\n"))
	_, _ = a.Write([]byte("line\nthree\n"))
	if got, want := out.String(), "[b] two\n[a] one line\n[a] three\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
