package topicspec

import (
	"context"
	"errors"
	"net"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
)

// freePort returns a port nothing listens on at the moment.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestProvision(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	spec := defaultSpec(t).WithReplicationFactor(1).WithPrefix("p.")

	report, err := Provision(testContext(t), kafkaconf.Config{Brokers: c.ListenAddrs()}, spec, testLogger(t))
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if want := []string{"p.requests.interactive", "p.requests.batch", "p.results", "p.deadletter", "p.models", "p.status", "p.history"}; !reflect.DeepEqual(report.Created, want) {
		t.Errorf("Created: got %v, want %v", report.Created, want)
	}
}

func TestProvisionWaitsForCluster(t *testing.T) {
	port := freePort(t)
	spec := defaultSpec(t).WithReplicationFactor(1)

	started := make(chan *kfake.Cluster, 1)
	go func() {
		time.Sleep(300 * time.Millisecond)
		c, err := kfake.NewCluster(kfake.Ports(port))
		if err != nil {
			t.Errorf("kfake: %v", err)
		}
		started <- c
	}()
	report, err := Provision(testContext(t), kafkaconf.Config{Brokers: []string{"127.0.0.1:" + strconv.Itoa(port)}}, spec, testLogger(t))
	if c := <-started; c != nil {
		defer c.Close()
	}
	if err != nil {
		t.Fatalf("Provision: %v", err)
	}
	if len(report.Created) != len(spec.Topics) {
		t.Errorf("Created: got %v, want the spec's %d topics", report.Created, len(spec.Topics))
	}
}

func TestProvisionErrors(t *testing.T) {
	spec := defaultSpec(t)
	invalid := spec.clone()
	invalid.Topics = invalid.Topics[:1]
	unreachable := []string{"127.0.0.1:" + strconv.Itoa(freePort(t))}

	tests := []struct {
		name    string
		brokers []string
		spec    *Spec
		want    error
	}{
		{name: "no brokers", spec: spec},
		{name: "invalid spec", brokers: unreachable, spec: invalid, want: ErrInvalid},
		{name: "unreachable", brokers: unreachable, spec: spec, want: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
			defer cancel()
			report, err := Provision(ctx, kafkaconf.Config{Brokers: tt.brokers}, tt.spec, nil)
			if err == nil {
				t.Fatalf("Provision: got nil error")
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("Provision: got %v, want %v", err, tt.want)
			}
			if report == nil {
				t.Errorf("Provision: got a nil report")
			}
		})
	}
}
