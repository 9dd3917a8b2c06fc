package egress

import (
	"strings"
	"testing"
	"time"
)

// FuzzCursorToken: any client text either is refused or opens to a
// position in range that seals back to the same token.
func FuzzCursorToken(f *testing.F) {
	k, err := newCursorCodec([]byte("fuzz secret"))
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range []string{"3:42", "", "c1.", "c1.AAAA", k.seal("t", "c", cursor{partition: 3, offset: 42}), k.seal("t", "c", cursor{partition: 0, offset: -1}),
		k.seal("t", "c", cursor{partition: 1, offset: 9, at: 1_700_000_000_000, origin: 7, ident: 8}), "c2.AAAA",
		k.seal("t", "c", cursor{partition: 1, offset: 9, held: 3}), k.seal("t", "c", cursor{partition: 1, offset: 9, at: 1_700_000_000_000, origin: 7, ident: 8, held: 4})} {
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

// FuzzStreamToken: any text either fails to open or is a token that seals
// back to itself (one spelling per grant; no forgery without the key).
func FuzzStreamToken(f *testing.F) {
	k, err := newTokenCodec([]byte("fuzz secret"))
	if err != nil {
		f.Fatal(err)
	}
	ok := k.seal(streamToken{tenant: "t", keyTag: [8]byte{1, 2, 3}, expires: time.Unix(1900000000, 0), convs: []string{"a", "b"}})
	for _, s := range []string{"", "st1.", "st1.AAAA.AAAA", ok, ok + "x", strings.Replace(ok, "st1.", "st2.", 1)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tok, err := k.open(s)
		if err != nil {
			return
		}
		if back := k.seal(tok); back != s {
			t.Fatalf("a second token %q for %+v (sealed %q)", s, tok, back)
		}
	})
}
