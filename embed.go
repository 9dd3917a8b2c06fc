// Package switchboard holds files that ship inside every binary, so a binary
// started from any directory knows the project's defaults.
package switchboard

import _ "embed"

// TopicsYAML is the repository's topics.yaml, the default topic specification
// (see internal/topicspec).
//
//go:embed topics.yaml
var TopicsYAML []byte
