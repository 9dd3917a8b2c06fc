package ingress

import (
	"bytes"
	"encoding/json"
)

// duplicateKey returns the first key that appears twice in one JSON object
// of b, at any depth. encoding/json keeps the last of duplicate keys
// silently, so a body whose duplicates a proxy in front reads differently
// could smuggle another model, conversation or webhook past it: such
// bodies are refused. b is valid JSON (decoded before this is called).
func duplicateKey(b []byte) (string, bool) {
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
