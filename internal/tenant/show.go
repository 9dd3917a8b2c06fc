package tenant

import (
	"fmt"
	"slices"
)

// What a tenant's clients may be shown beyond their answers (the show list
// of a tenants file). By default clients see neither: which backend
// answered and when each step happened are the operator's business, and
// Kafka positions let one tenant count another's traffic.
const (
	// ShowBackend adds the name of the backend that answered to final
	// results (egress).
	ShowBackend = "backend"
	// ShowTimings adds the request's timings (accepted, dispatched, first
	// token, completed) to final results (egress).
	ShowTimings = "timings"
	// ShowKafkaPositions adds the partition and offset of the stored
	// request to ingress's acknowledgements.
	ShowKafkaPositions = "kafka_positions"
)

var showable = []string{ShowBackend, ShowTimings, ShowKafkaPositions}

// Shows reports whether t's clients may be shown what (a Show constant).
// A nil tenant (egress without a tenants file) shows nothing.
func (t *Tenant) Shows(what string) bool {
	return t != nil && slices.Contains(t.Show, what)
}

func (t *Tenant) checkShow() error {
	for _, s := range t.Show {
		if !slices.Contains(showable, s) {
			return fmt.Errorf("tenant %q: show: %q is not one of %v", t.Name, s, showable)
		}
	}
	return nil
}
