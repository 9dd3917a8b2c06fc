package presence

import (
	"errors"
	"strings"
	"testing"
)

func TestDecode(t *testing.T) {
	good := Record{Instance: "a", Run: "r", IntervalMillis: 1000, Tenants: map[string]Demand{"t": {Requests: 1.5, Tokens: 30}}}
	got, err := Decode([]byte("a"), Encode(&good))
	if err != nil || got.Instance != "a" || got.Tenants["t"] != good.Tenants["t"] || got.Interval().Seconds() != 1 {
		t.Fatalf("round trip = %+v, %v", got, err)
	}
	for _, tc := range []struct{ name, key, value string }{
		{"not JSON", "a", `{"instance":`},
		{"key is not the instance", "b", `{"instance":"a","interval_ms":1000}`},
		{"no instance", "", `{"interval_ms":1000}`},
		{"interval too short", "a", `{"instance":"a","interval_ms":1}`},
		{"interval too long", "a", `{"instance":"a","interval_ms":3600000}`},
		{"negative demand", "a", `{"instance":"a","interval_ms":1000,"tenants":{"t":{"requests":-1}}}`},
		{"huge demand", "a", `{"instance":"a","interval_ms":1000,"tenants":{"t":{"tokens":1e300}}}`},
		{"empty tenant", "a", `{"instance":"a","interval_ms":1000,"tenants":{"":{"requests":1}}}`},
		{"long run", "a", `{"instance":"a","run":"` + strings.Repeat("r", 65) + `","interval_ms":1000}`},
		{"too large", "a", `{"instance":"a","interval_ms":1000,"x":"` + strings.Repeat("x", MaxRecordBytes) + `"}`},
	} {
		if _, err := Decode([]byte(tc.key), []byte(tc.value)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", tc.name, err)
		}
	}
}

// FuzzDecode: no value crashes Decode, and what it accepts is within the
// bounds and encodes back to a record it accepts again.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("a"), []byte(`{"instance":"a","run":"r","interval_ms":1000,"tenants":{"t":{"requests":1,"tokens":2}}}`))
	f.Add([]byte("a"), []byte(`{"instance":"a","interval_ms":10}`))
	f.Add([]byte("x"), []byte(`null`))
	f.Add([]byte(""), []byte(`{"tenants":{"t":{"requests":"NaN"}}}`))
	f.Fuzz(func(t *testing.T, key, value []byte) {
		r, err := Decode(key, value)
		if err != nil {
			return
		}
		if len(r.Tenants) > MaxTenants || r.Interval() < minInterval || r.Interval() > maxInterval || string(key) != r.Instance {
			t.Fatalf("accepted out of bounds: %+v", r)
		}
		for _, d := range r.Tenants {
			if !valid(d.Requests) || !valid(d.Tokens) {
				t.Fatalf("accepted demand %+v", d)
			}
		}
		again, err := Decode(key, Encode(&r))
		if err != nil || len(again.Tenants) != len(r.Tenants) {
			t.Fatalf("re-encoded record: %+v, %v", again, err)
		}
		_ = Compute(r.Instance, map[string]map[string]Demand{r.Instance: r.Tenants, "other": r.Tenants})
	})
}
