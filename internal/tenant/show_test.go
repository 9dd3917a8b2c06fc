package tenant

import (
	"strings"
	"testing"
)

func TestShow(t *testing.T) {
	key := HashKey("k")
	s, err := Parse([]byte("tenants:\n  - name: a\n    key_sha256: [" + key + "]\n    show: [backend, kafka_positions]\n"))
	if err != nil {
		t.Fatal(err)
	}
	a := s.Tenant("a")
	if !a.Shows(ShowBackend) || !a.Shows(ShowKafkaPositions) || a.Shows(ShowTimings) {
		t.Errorf("shows %v", a.Show)
	}
	var none *Tenant
	if none.Shows(ShowBackend) {
		t.Error("a nil tenant shows something")
	}
	_, err = Parse([]byte("tenants:\n  - name: a\n    key_sha256: [" + key + "]\n    show: [secrets]\n"))
	if err == nil || !strings.Contains(err.Error(), "secrets") {
		t.Errorf("unknown show value: %v", err)
	}
}
