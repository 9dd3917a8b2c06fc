package router

import (
	"testing"
)

// FuzzParseBackends: no input crashes the parser, and whatever it accepts
// the balancer can run.
func FuzzParseBackends(f *testing.F) {
	f.Add([]byte("backends:\n  - {name: a, base_url: 'http://127.0.0.1:1/v1', models: [m], weight: 2}\naliases: {x: m}\nfallbacks: {}\n"))
	f.Add([]byte("backends:\n  - {name: a, base_url: 'http://x', models: [m, n]}\n  - {name: b, base_url: 'https://y/v1', models: [n]}\nfallbacks: {m: [n]}\nbreaker: {failures: 1}\n"))
	f.Add([]byte("backends: []\n"))
	f.Add([]byte("backends:\n  - name: ${X:-a}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		rt, err := ParseBackends(data)
		if err != nil {
			return
		}
		b, err := newBalancer(rt, nil)
		if err != nil {
			t.Fatalf("a parsed file the balancer rejects: %v", err)
		}
		for m := range b.served {
			if c := b.chain(m); len(c) == 0 || c[0] != m {
				t.Fatalf("chain(%q) = %v", m, c)
			}
		}
	})
}
