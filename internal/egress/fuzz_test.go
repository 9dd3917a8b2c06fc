package egress

import (
	"testing"
)

// FuzzCursorToken: any client text either is refused or opens to a
// position in range that seals back to the same token.
func FuzzCursorToken(f *testing.F) {
	k, err := newCursorCodec([]byte("fuzz secret"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"3:42", "", "c1.", "c1.AAAA", k.seal("t", "c", cursor{3, 42}), k.seal("t", "c", cursor{0, -1})} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := k.open("t", "c", s)
		if err != nil {
			return
		}
		if c.partition < 0 || c.offset < -1 {
			t.Fatalf("open(%q) = %v: out of range", s, c)
		}
		if back := k.seal("t", "c", c); back != s {
			t.Fatalf("a second token %q for %v (sealed %q)", s, c, back)
		}
	})
}
