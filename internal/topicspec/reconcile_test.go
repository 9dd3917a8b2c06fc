package topicspec

import (
	"context"
	"errors"
	"log/slog"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// newCluster starts a three-broker kfake cluster and an admin client for it,
// both closed when the test ends.
func newCluster(t *testing.T) (*kfake.Cluster, *kadm.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(3))
	if err != nil {
		t.Fatalf("kfake: %v", err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatalf("kgo: %v", err)
	}
	t.Cleanup(cl.Close)
	return c, kadm.NewClient(cl)
}

func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func defaultSpec(t *testing.T) *Spec {
	t.Helper()
	spec, err := Load("")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return spec
}

func TestReconcileCreatesThenNoop(t *testing.T) {
	ctx := testContext(t)
	_, adm := newCluster(t)
	spec := defaultSpec(t)
	all := spec.names()

	report, err := Reconcile(ctx, adm, spec, testLogger(t))
	if err != nil {
		t.Fatalf("first Reconcile: %v", err)
	}
	if want := (&Report{Created: all}); !reflect.DeepEqual(report, want) {
		t.Errorf("first Reconcile:\ngot  %+v\nwant %+v", report, want)
	}
	if !report.Changed() {
		t.Errorf("first Reconcile: Changed() = false")
	}

	details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), all...) // uncached
	if err != nil {
		t.Fatalf("ListTopics: %v", err)
	}
	rcs, err := adm.DescribeTopicConfigs(ctx, all...)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs: %v", err)
	}
	for _, topic := range spec.Topics {
		name := spec.Name(topic.Name)
		d := details[name]
		if got := int32(len(d.Partitions)); got != topic.Partitions {
			t.Errorf("%s: got %d partitions, want %d", name, got, topic.Partitions)
		}
		if got := int16(len(d.Partitions[0].Replicas)); got != topic.ReplicationFactor {
			t.Errorf("%s: got replication factor %d, want %d", name, got, topic.ReplicationFactor)
		}
		rc, err := rcs.On(name, nil)
		if err != nil {
			t.Fatalf("%s: configs: %v", name, err)
		}
		got := make(map[string]string)
		for _, c := range rc.Configs {
			got[c.Key] = c.MaybeValue()
		}
		for k, want := range topic.Configs {
			if got[k] != want {
				t.Errorf("%s: config %s: got %q, want %q", name, k, got[k], want)
			}
		}
	}

	report, err = Reconcile(ctx, adm, spec, testLogger(t))
	if err != nil {
		t.Fatalf("second Reconcile: %v", err)
	}
	if want := (&Report{InSync: all}); !reflect.DeepEqual(report, want) {
		t.Errorf("second Reconcile:\ngot  %+v\nwant %+v", report, want)
	}
	if report.Changed() {
		t.Errorf("second Reconcile: Changed() = true")
	}
}

func TestReconcilePartitions(t *testing.T) {
	tests := []struct {
		name      string
		partition int32 // the spec's count for results on the second run
		wantCount int32 // the cluster's count afterwards
		want      func(results string, others []string) *Report
	}{
		{
			name: "grow", partition: 16, wantCount: 16,
			want: func(results string, others []string) *Report {
				return &Report{Grown: []Growth{{Topic: results, From: 12, To: 16}}, InSync: others}
			},
		},
		{
			name: "never shrink", partition: 6, wantCount: 12,
			want: func(results string, others []string) *Report {
				return &Report{Surplus: []Surplus{{Topic: results, Want: 6, Got: 12}}, InSync: others}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testContext(t)
			_, adm := newCluster(t)
			spec := defaultSpec(t)
			if _, err := Reconcile(ctx, adm, spec, testLogger(t)); err != nil {
				t.Fatalf("first Reconcile: %v", err)
			}

			changed := spec.clone()
			var others []string
			for i := range changed.Topics {
				if changed.Topics[i].Name == Results {
					changed.Topics[i].Partitions = tt.partition
				} else {
					others = append(others, changed.Name(changed.Topics[i].Name))
				}
			}
			results := spec.Name(Results)
			report, err := Reconcile(ctx, adm, changed, testLogger(t))
			if err != nil {
				t.Fatalf("second Reconcile: %v", err)
			}
			if want := tt.want(results, others); !reflect.DeepEqual(report, want) {
				t.Errorf("second Reconcile:\ngot  %+v\nwant %+v", report, want)
			}
			details, err := adm.ListTopics(kadm.WithAuthorizedOps(ctx), results) // uncached
			if err != nil {
				t.Fatalf("ListTopics: %v", err)
			}
			if got := int32(len(details[results].Partitions)); got != tt.wantCount {
				t.Errorf("%s: got %d partitions, want %d", results, got, tt.wantCount)
			}
		})
	}
}

func TestReconcileReportsDrift(t *testing.T) {
	ctx := testContext(t)
	_, adm := newCluster(t)
	spec := defaultSpec(t)
	if _, err := Reconcile(ctx, adm, spec, testLogger(t)); err != nil {
		t.Fatalf("first Reconcile: %v", err)
	}

	results := spec.Name(Results)
	alter := []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "retention.ms", Value: kadm.StringPtr("1000")}}
	resps, err := adm.AlterTopicConfigs(ctx, alter, results)
	if err == nil {
		_, err = resps.On(results, func(r *kadm.AlterConfigsResponse) error { return r.Err })
	}
	if err != nil {
		t.Fatalf("AlterTopicConfigs: %v", err)
	}

	report, err := Reconcile(ctx, adm, spec, testLogger(t))
	if err != nil {
		t.Fatalf("second Reconcile: %v", err)
	}
	wantDrift := []Drift{{Topic: results, Key: "retention.ms", Want: "86400000", Got: "1000"}}
	if !reflect.DeepEqual(report.Drift, wantDrift) {
		t.Errorf("Drift: got %+v, want %+v", report.Drift, wantDrift)
	}
	if len(report.InSync) != len(spec.Topics)-1 || report.Changed() {
		t.Errorf("report: got %+v, want every topic but results in sync and no changes", report)
	}
	if s := report.String(); !strings.Contains(s, `drift    switchboard.results: retention.ms = "1000" on the cluster, spec wants "86400000"`) {
		t.Errorf("String: got %q", s)
	}

	rcs, err := adm.DescribeTopicConfigs(ctx, results)
	if err != nil {
		t.Fatalf("DescribeTopicConfigs: %v", err)
	}
	rc, _ := rcs.On(results, nil)
	for _, c := range rc.Configs {
		if c.Key == "retention.ms" && c.MaybeValue() != "1000" {
			t.Errorf("retention.ms: got %q after Reconcile, want the cluster's %q untouched", c.MaybeValue(), "1000")
		}
	}
}

func TestReconcilePartialFailure(t *testing.T) {
	ctx := testContext(t)
	_, adm := newCluster(t)
	spec := defaultSpec(t)
	for i := range spec.Topics {
		if spec.Topics[i].Name == DeadLetter {
			spec.Topics[i].ReplicationFactor = 5 // more than the cluster's three brokers
		}
	}

	report, err := Reconcile(ctx, adm, spec, testLogger(t))
	if !errors.Is(err, kerr.InvalidReplicationFactor) {
		t.Fatalf("Reconcile: got %v, want INVALID_REPLICATION_FACTOR", err)
	}
	if !strings.Contains(err.Error(), "topic switchboard.deadletter: create") {
		t.Errorf("Reconcile error %q does not name the topic", err)
	}
	want := []string{spec.Name(RequestsInteractive), spec.Name(RequestsBatch), spec.Name(Results), spec.Name(Models), spec.Name(Status), spec.Name(History)}
	if !reflect.DeepEqual(report.Created, want) {
		t.Errorf("Created: got %v, want %v", report.Created, want)
	}
}

func TestReconcileCreateRace(t *testing.T) {
	ctx := testContext(t)
	c, adm := newCluster(t)
	spec := defaultSpec(t)
	interactive := spec.Name(RequestsInteractive)

	// Another client creates the first topic, with its own partition count
	// and no configs, between our listing and our create.
	var raced atomic.Bool
	c.ControlKey(kmsg.CreateTopics.Int16(), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.DropControl()
		c.SleepControl(func() {
			raced.Store(c.CreateTopic(interactive, 20, nil) == nil)
		})
		return nil, nil, false
	})

	// The racing count differs from history's, which Reconcile reports.
	report, err := Reconcile(ctx, adm, spec, testLogger(t))
	if err == nil || !strings.Contains(err.Error(), "not co-partitioned") {
		t.Fatalf("Reconcile: got %v, want the history topic reported as not co-partitioned", err)
	}
	if !raced.Load() {
		t.Fatalf("the racing create did not happen")
	}
	if want := spec.names()[1:]; !reflect.DeepEqual(report.Created, want) {
		t.Errorf("Created: got %v, want %v", report.Created, want)
	}
	if want := []Surplus{{Topic: interactive, Want: 12, Got: 20}}; !reflect.DeepEqual(report.Surplus, want) {
		t.Errorf("Surplus: got %+v, want %+v", report.Surplus, want)
	}
	if len(report.Drift) == 0 {
		t.Errorf("Drift: got none, want the racing topic's configs reported")
	}
	for _, d := range report.Drift {
		if d.Topic != interactive {
			t.Errorf("Drift: unexpected %+v", d)
		}
	}
}

func TestReconcileInvalidSpec(t *testing.T) {
	_, adm := newCluster(t)
	spec := defaultSpec(t)
	spec.Topics = spec.Topics[1:]
	report, err := Reconcile(testContext(t), adm, spec, nil)
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("Reconcile: got %v, want ErrInvalid", err)
	}
	if report == nil {
		t.Errorf("Reconcile: got a nil report")
	}
}

func TestReportString(t *testing.T) {
	tests := []struct {
		report Report
		want   string
	}{
		{report: Report{}, want: ""},
		{
			report: Report{
				Created: []string{"a"},
				Grown:   []Growth{{Topic: "b", From: 1, To: 2}},
				Surplus: []Surplus{{Topic: "c", Want: 1, Got: 3}},
				Drift:   []Drift{{Topic: "d", Key: "k", Want: "w", Got: "g"}},
				InSync:  []string{"e"},
			},
			want: "created  a\n" +
				"grown    b: 1 -> 2 partitions\n" +
				"surplus  c: 3 partitions, spec asks for 1 (left as is)\n" +
				"drift    d: k = \"g\" on the cluster, spec wants \"w\" (left as is)\n" +
				"in sync  e\n",
		},
	}
	for _, tt := range tests {
		if got := tt.report.String(); got != tt.want {
			t.Errorf("String:\ngot  %q\nwant %q", got, tt.want)
		}
	}
}
