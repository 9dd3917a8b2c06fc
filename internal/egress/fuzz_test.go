package egress

import (
	"testing"
)

// FuzzParseCursor: any client text either fails cleanly or round-trips.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"3:42", "0:-1", "", ":", "1:2:3", "-1:0", "99999999999:1", "1:9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := parseCursor(s)
		if err != nil {
			return
		}
		if c.partition < 0 || c.offset < -1 {
			t.Fatalf("parseCursor(%q) = %v: out of range", s, c)
		}
		back, err := parseCursor(c.String())
		if err != nil || back != c {
			t.Fatalf("round trip of %q: %v, %v", s, back, err)
		}
	})
}
