package egress

import (
	"bufio"
	"cmp"
	"context"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"

	"github.com/switchboard-llm/switchboard/internal/tenant"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

const (
	keyA = "sk-tenant-a-0123456789"
	keyB = "sk-tenant-b-0123456789"
)

// TestTenantSeesOnlyItsOwnResults: with API keys, a stream needs a valid
// key and carries only its tenant's results, even in a conversation ID
// another tenant also uses.
func TestTenantSeesOnlyItsOwnResults(t *testing.T) {
	tenants, err := tenant.Parse([]byte("tenants:\n  - name: a\n    key_sha256: [" + tenant.HashKey(keyA) + "]\n  - name: b\n    key_sha256: [" + tenant.HashKey(keyB) + "]\n"))
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	eg := h.start(func(c *Config) { c.Tenants = tenants })
	h.produce(
		res("shared", "a", "ra", "run", 1, 0, false),
		res("shared", "b", "rb", "run", 1, 0, false),
		res("shared", "b", "rb", "run", 1, 0, true),
		res("shared", "a", "ra", "run", 1, 0, true),
	)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	url := eg.url + "/v1/conversations/shared/events?request_id="

	for _, tc := range []struct {
		name   string
		header http.Header
		query  string
		until  string
		status int
		want   []string
	}{
		{"no key", nil, "", "ra", http.StatusUnauthorized, nil},
		{"unknown key", http.Header{"Authorization": {"Bearer sk-nobody-000000000000"}}, "", "ra", http.StatusUnauthorized, nil},
		{"a key's digest", http.Header{"Authorization": {"Bearer " + tenant.HashKey(keyA)}}, "", "ra", http.StatusUnauthorized, nil},
		{"tenant a", http.Header{"Authorization": {"Bearer " + keyA}}, "", "ra",
			http.StatusOK, []string{"chunk:ra/run/1/0", "result:done ra", "end:done"}},
		{"tenant b by access_token", nil, "&access_token=" + keyB, "rb",
			http.StatusOK, []string{"chunk:rb/run/1/0", "result:done rb", "end:done"}},
	} {
		evs, status := readSSE(ctx, t, url+tc.until+tc.query, tc.header, 0)
		if status != tc.status || !slices.Equal(labels(evs), tc.want) {
			t.Errorf("%s: status %d, events %v; want %d %v", tc.name, status, labels(evs), tc.status, tc.want)
		}
	}
	// WebSocket and gRPC check the key the same way.
	if _, _, err := readWS(ctx, t, "ws"+strings.TrimPrefix(eg.url, "http")+"/v1/conversations/shared/ws"); err == nil || !strings.Contains(err.Error(), "401") {
		t.Errorf("WebSocket without a key: %v, want a 401", err)
	}
	if _, err := readGRPC(ctx, t, eg.grpcAddr, &pb.SubscribeRequest{ConversationId: "shared"}, ""); err == nil || !strings.Contains(err.Error(), "Unauthenticated") {
		t.Errorf("gRPC without a key: %v, want Unauthenticated", err)
	}
	gr, err := readGRPC(ctx, t, eg.grpcAddr, &pb.SubscribeRequest{ConversationId: "shared", RequestId: "rb"}, keyB)
	if want := []string{"chunk:rb/run/1/0", "result:done rb", "end:done"}; err != nil || !slices.Equal(labels(gr), want) {
		t.Errorf("gRPC tenant b: %v %v, want %v", err, labels(gr), want)
	}
	if n := eg.metric(t, "switchboard_egress_results_filtered_total", "reason", "other_tenant"); n < 4 {
		t.Errorf("other_tenant filtered = %v, want at least 4", n)
	}
}

// TestReplayEndsWhenRetentionEmptiedTheRange: a resume from a cursor whose
// records retention has deleted, all of them, goes live at once (its
// keep-alives flow, new results arrive) rather than waiting for the
// deleted records until the replay times out.
func TestReplayEndsWhenRetentionEmptiedTheRange(t *testing.T) {
	h := newHarness(t)
	eg := h.start(func(c *Config) {
		c.ReplayTimeout = 10 * time.Minute
		c.Heartbeat = 20 * time.Millisecond
		c.RecentBytes = -1 // the records stay in memory otherwise: this is about Kafka's replay
	})
	cursors := h.produce(
		res("gone", "t", "r1", "run", 1, 0, false),
		res("gone", "t", "r1", "run", 1, 1, false),
		res("gone", "t", "r1", "run", 1, 0, true),
	)
	// The live feed has read them before retention (DeleteRecords) takes
	// them: the resume's range must come from a replay.
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	waitFor(ctx, t, "the live feed to pass the records", func() bool {
		eg.e.hub.mu.Lock()
		defer eg.e.hub.mu.Unlock()
		return eg.e.hub.next[cursors[0].partition] > cursors[2].offset
	})
	adm := kadm.NewClient(h.client)
	var del kadm.Offsets
	del.Add(kadm.Offset{Topic: resultsTopic, Partition: cursors[0].partition, At: cursors[2].offset + 1})
	if _, err := adm.DeleteRecords(t.Context(), del); err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, eg.url+"/v1/conversations/gone/events?request_id=r2", nil)
	req.Header.Set("Last-Event-ID", eg.token("", "gone", cursors[0]))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() && sc.Text() != ": keep-alive" {
	}
	if sc.Err() != nil || ctx.Err() != nil {
		t.Fatalf("no keep-alive: the stream is stuck in its replay (%v)", cmp.Or(sc.Err(), ctx.Err()))
	}
	later := h.produce(res("gone", "t", "r2", "run", 1, 0, true))
	evs := parseSSE(t, resp.Body, 0, nil)
	want := []string{"result:done r2", "end:done"}
	if !slices.Equal(labels(evs), want) || evs[0].cursor != eg.token("", "gone", later[0]) {
		t.Errorf("events %v, want %v at %s", evs, want, later[0])
	}
	if n := eg.metric(t, "switchboard_egress_replay_gaps_total"); n != 1 {
		t.Errorf("replay gaps = %v, want 1", n)
	}
}
