//go:build integration || kafka

package e2e

import (
	"testing"
)

// TestRealKafkaConversationMemory: TestConversationMemory on Apache Kafka,
// at least once and with --exactly-once (real transactions: the history
// appended in the final result's transaction, rebuilt read_committed past
// the commit markers).
func TestRealKafkaConversationMemory(t *testing.T) {
	t.Run("at-least-once", func(t *testing.T) { conversationMemory(t, realKafka(t)) })
	t.Run("exactly-once", func(t *testing.T) {
		opts := realKafka(t)
		// A longer session: on the loaded 2-core test machine the
		// transactional worker missed 3 s of heartbeats again and again.
		opts.RouterArgs = []string{"--exactly-once", "--session-timeout", "10s"}
		conversationMemory(t, opts)
	})
}
