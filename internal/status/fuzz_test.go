package status

import (
	"testing"
)

// FuzzDecode: no input panics Decode, and what it accepts encodes again
// within MaxBytes and decodes to the same key.
func FuzzDecode(f *testing.F) {
	good, _ := Encode(routerRecord())
	f.Add([]byte("router-worker/w-1"), good)
	f.Add([]byte("ingress/i"), []byte(`{"v":1,"service":"ingress","instance":"i","at":"2026-12-04T12:00:00Z","ingress":{"admission":true,"lanes":[{"lane":"batch","lag":3}]}}`))
	f.Add([]byte(""), []byte("null"))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := Decode(key, value)
		if err != nil {
			return
		}
		b, err := Encode(r)
		if err != nil {
			return // an accepted record with an instance too long to clip is refused on the way out
		}
		if len(b) > MaxBytes {
			t.Fatalf("re-encoded %d bytes, more than %d", len(b), MaxBytes)
		}
		if _, err := Decode([]byte(r.Key()), b); err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
	})
}
