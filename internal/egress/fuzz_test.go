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

// FuzzParseTenants: no tenants file crashes the loader; what loads
// authenticates each of its keys as its tenant.
func FuzzParseTenants(f *testing.F) {
	f.Add([]byte("tenants:\n  - name: a\n    api_keys: [sk-aaaaaaaaaaaaaaaa]\n    webhook_url: https://h.example/x\n"))
	f.Add([]byte("tenants: []\n"))
	f.Add([]byte("tenants:\n  - name: a\n  - name: a\n"))
	f.Add([]byte("{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := ParseTenants(data)
		if err != nil {
			return
		}
		for name, tn := range ts.byName {
			for _, k := range tn.APIKeys {
				if got, err := ts.Authenticate(k); err != nil || got != name {
					t.Fatalf("key of %q authenticates as %q, %v", name, got, err)
				}
			}
		}
		if _, err := ts.Authenticate(""); err == nil {
			t.Fatal("the empty key authenticated")
		}
	})
}
