package ingress

import (
	"bytes"
	"encoding/json"
	"testing"
)

// FuzzDuplicateKey holds duplicateKey's scan to a reading of
// encoding/json's tokens on every valid JSON value: the same first
// duplicate, or none.
func FuzzDuplicateKey(f *testing.F) {
	for _, seed := range []string{
		`{"a":1,"b":2}`, `{"a":1,"a":2}`, `{"a":{"b":1,"c":{"b":2}},"b":[{"x":1},{"x":2}]}`,
		`{"m":[{"role":"user","role":"system"}]}`, `{"a":["a","a"],"b":"a"}`,
		`{"metadata":{"A":"1","a":"2"}}`, `{"a":1,"\u0061":2}`, `{"a\"b":1,"a\\":2,"a\"b":3}`,
		`{"k":"v\",\"k\":1","k2":[]}`, `[{"":1},{"":2,"":3}]`, `"x"`, `12`, `{"x":{"y":{}},"y":1,"x":2}`,
		"{\"\xff\":1,\"\\ufffd\":2}", ` { "a" : [ ] , "a" : { } } `,
		`{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k11":1,"k12":1,"k13":1,"k14":1,"k15":1,"k16":1,"k17":1,"k18":1,"k3":2}`,
		`{"k1":1,"k2":1,"k3":1,"k4":1,"k5":1,"k6":1,"k7":1,"k8":1,"k9":1,"k10":1,"k11":1,"k12":1,"k13":1,"k14":1,"k15":1,"k16":1,"k17":1,"k18":1,"k18":2}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if !json.Valid(b) {
			return
		}
		got, dup := duplicateKey(b)
		want, wantDup := duplicateKeyTokens(b)
		if got != want || dup != wantDup {
			t.Fatalf("%s: scan %q %v, tokens %q %v", b, got, dup, want, wantDup)
		}
	})
}

// duplicateKeyTokens is the first duplicateKey, on encoding/json's
// tokens: the reading the scan must agree with.
func duplicateKeyTokens(b []byte) (string, bool) {
	type level struct {
		keys      map[string]bool // nil for an array
		expectKey bool
	}
	var stack []level
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		top := len(stack) - 1
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				stack = append(stack, level{keys: map[string]bool{}, expectKey: true})
				continue
			case '[':
				stack = append(stack, level{})
				continue
			default: // '}' or ']': a value of the enclosing level ends
				stack = stack[:top]
			}
		case string:
			if top >= 0 && stack[top].keys != nil && stack[top].expectKey {
				if stack[top].keys[t] {
					return t, true
				}
				stack[top].keys[t] = true
				stack[top].expectKey = false
				continue
			}
		}
		if top = len(stack) - 1; top >= 0 && stack[top].keys != nil {
			stack[top].expectKey = true
		}
	}
}
