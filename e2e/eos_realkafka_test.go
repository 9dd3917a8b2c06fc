//go:build integration || kafka

package e2e

import "testing"

// TestRealKafkaExactlyOnceStreams: kill -9 of router-worker --exactly-once
// with a transaction open on Apache Kafka (real coordinator, timeout abort,
// KIP-890); stream clients never see its terminal results and see each
// request's committed one once (TestExactlyOnceStreamsShowOnlyCommitted).
func TestRealKafkaExactlyOnceStreams(t *testing.T) {
	exactlyOnceStreams(t, realKafka(t))
}
