//go:build integration || kafka

package e2e

import "testing"

// TestRealKafkaTenantLimitAcrossInstances: three ingress processes hold
// one tenant's limit within ±10 % on Apache Kafka, where the presence topic
// is really compacted (TestTenantLimitAcrossInstances).
func TestRealKafkaTenantLimitAcrossInstances(t *testing.T) {
	tenantLimitAcrossInstances(t, realKafka(t))
}
