package ingress

import (
	"encoding/json"
	"slices"
	"unicode/utf8"
)

// duplicateKey returns the first key that appears twice in one JSON object
// of b, at any depth. encoding/json keeps the last of duplicate keys
// silently, so a body whose duplicates a proxy in front reads differently
// could smuggle another model, conversation or webhook past it: such
// bodies are refused. b is valid JSON (decoded before this is called), so
// a scan of its bytes finds the keys; only a key with escapes is decoded.
// (It used encoding/json's tokens before: a quarter of ingress's allocated
// bytes and 8 % of its CPU. FuzzDuplicateKey holds the scan to them.)
func duplicateKey(b []byte) (string, bool) {
	type level struct {
		object    bool
		expectKey bool
		keys      []string            // the first few keys: most objects are small
		more      map[string]struct{} // every key, once an object has many
	}
	var stack []level
	for i := 0; i < len(b); i++ {
		top := len(stack) - 1
		switch b[i] {
		case '{':
			stack = append(stack, level{object: true, expectKey: true})
		case '[':
			stack = append(stack, level{})
		case '}', ']':
			stack = stack[:top]
		case ',':
			if top >= 0 && stack[top].object {
				stack[top].expectKey = true
			}
		case '"':
			end, escaped := i+1, false
			for b[end] != '"' {
				if b[end] == '\\' {
					escaped = true
					end++
				}
				end++
			}
			if top >= 0 && stack[top].expectKey {
				key, l := jsonKey(b[i:end+1], escaped), &stack[top]
				if _, seen := l.more[key]; seen || slices.Contains(l.keys, key) {
					return key, true
				}
				switch {
				case l.more != nil:
					l.more[key] = struct{}{}
				case len(l.keys) < 16:
					l.keys = append(l.keys, key)
				default: // a search per key would make a big object quadratic
					l.more = make(map[string]struct{}, 64)
					for _, k := range append(l.keys, key) {
						l.more[k] = struct{}{}
					}
					l.keys = nil
				}
				l.expectKey = false
			}
			i = end
		}
	}
	return "", false
}

// jsonKey is the string a JSON string literal (quotes included) stands
// for, as encoding/json decodes it.
func jsonKey(lit []byte, escaped bool) string {
	if !escaped && utf8.Valid(lit) {
		return string(lit[1 : len(lit)-1])
	}
	var s string
	_ = json.Unmarshal(lit, &s) // valid: the body was decoded
	return s
}
