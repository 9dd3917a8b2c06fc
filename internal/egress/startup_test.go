package egress

import (
	"context"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/switchboard-llm/switchboard/internal/kafkaconf"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
	"github.com/switchboard-llm/switchboard/internal/webhook"
)

// An egress whose listen address is taken exits with the error at once and
// never joins the webhook group (issue 15).
func TestTakenAddrExitsWithoutJoining(t *testing.T) {
	h := newHarness(t)
	var joins atomic.Int64
	h.cluster.ControlKey(int16(kmsg.JoinGroup), func(kmsg.Request) (kmsg.Response, error, bool) {
		h.cluster.KeepControl()
		joins.Add(1)
		return nil, nil, false
	})
	for _, which := range []string{"http", "grpc"} {
		t.Run(which, func(t *testing.T) {
			taken, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			defer taken.Close()
			spec, err := topicspec.Load("")
			if err != nil {
				t.Fatal(err)
			}
			cfg := Config{
				Addr:           freeAddr(t),
				GRPCAddr:       freeAddr(t),
				Kafka:          kafkaconf.Config{Brokers: h.cluster.ListenAddrs()},
				Topics:         spec,
				AllowAnonymous: true,
				Logger:         slog.New(slog.DiscardHandler),
				Webhooks:       webhook.Config{Enabled: true, Allow: []string{"127.0.0.1"}, Secret: []byte("secret-0123456789abcdef")},
			}
			if which == "http" {
				cfg.Addr = taken.Addr().String()
			} else {
				cfg.GRPCAddr = taken.Addr().String()
			}
			e, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(300 * time.Millisecond) // a client that joins at creation does it by now
			done := make(chan error, 1)
			go func() { done <- e.Run(context.Background()) }()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "listen") {
					t.Errorf("Run = %v, want a listen error", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("Run did not return within 10s of failing to listen")
			}
			if n := joins.Load(); n != 0 {
				t.Errorf("egress sent %d JoinGroup requests, want none before it listens", n)
			}
		})
	}
}

// --webhook-instance-id makes the egress a static member of the webhook
// group, and /readyz reports the membership and partitions.
func TestWebhookStaticMember(t *testing.T) {
	h := newHarness(t)
	eg := h.start(func(c *Config) {
		c.Webhooks = webhook.Config{Enabled: true, Allow: []string{"127.0.0.1"}, Secret: []byte("secret-0123456789abcdef"),
			InstanceID: "egress-0", SessionTimeout: 10 * time.Second}
	})
	var detail string
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		detail, err = eg.e.Ready(httptest.NewRequest("GET", "/readyz", nil))
		if err != nil {
			t.Fatalf("not ready: %v", err)
		}
		if strings.Contains(detail, "4 partitions") || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	want := "webhooks: group switchboard-egress-webhooks member egress-0 (static), generation"
	if !strings.HasPrefix(detail, want) || !strings.HasSuffix(detail, "4 partitions: "+resultsTopic+"[0 1 2 3]") {
		t.Errorf("readiness detail %q, want %q... with the 4 results partitions", detail, want)
	}
	groups, err := kadm.NewClient(h.client).DescribeGroups(t.Context(), "switchboard-egress-webhooks")
	if err != nil {
		t.Fatal(err)
	}
	g := groups["switchboard-egress-webhooks"]
	if len(g.Members) != 1 || g.Members[0].InstanceID == nil || *g.Members[0].InstanceID != "egress-0" {
		t.Errorf("webhook group members %+v, want one with instance ID egress-0", g.Members)
	}
}
