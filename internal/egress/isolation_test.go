package egress

import (
	"bufio"
	"cmp"
	"context"
	"net/http"
	"os"
	"path/filepath"
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
		{"a key in the URL", nil, "&access_token=" + keyB, "rb", http.StatusUnauthorized, nil},
		{"tenant b", http.Header{"Authorization": {"Bearer " + keyB}}, "", "rb",
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

// TestTenantsReloadEndsRevokedStreams: egress with a tenants file reloads
// it on change: an open stream of a revoked key ends with the end event
// "revoked" within seconds, a new stream with that key gets 401, the other
// tenant's streams go on; a broken file is rejected and counted.
func TestTenantsReloadEndsRevokedStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	write := func(s string) {
		t.Helper()
		if err := os.WriteFile(path+".tmp", []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	entry := func(name, key string) string {
		return "  - name: " + name + "\n    key_sha256: [" + tenant.HashKey(key) + "]\n"
	}
	write("tenants:\n" + entry("a", keyA) + entry("b", keyB))
	h := newHarness(t)
	eg := h.start(func(c *Config) { c.TenantsFile, c.TenantsCheckInterval = path, 20*time.Millisecond })
	h.produce(res("rv", "a", "ra", "run", 1, 0, false), res("rv", "b", "rb", "run", 1, 0, false))
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	type stream struct{ evs []got }
	open := func(key string) chan stream {
		out := make(chan stream, 1)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, eg.url+"/v1/conversations/rv/events", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("stream of %s: %v %v", key, resp, err)
		}
		go func() {
			defer resp.Body.Close()
			out <- stream{evs: parseSSE(t, resp.Body, 0, nil)}
		}()
		return out
	}
	a, b := open(keyA), open(keyB)
	waitFor(ctx, t, "both streams", func() bool { return eg.metric(t, "switchboard_egress_subscribers", "transport", "sse") == 2 })

	revokedAt := time.Now()
	write("tenants:\n" + entry("b", keyB))
	select {
	case s := <-a:
		if l := labels(s.evs); len(l) == 0 || l[len(l)-1] != "end:revoked" {
			t.Errorf("the revoked key's stream: %v, want it to end with end:revoked", l)
		}
		t.Logf("revoked stream ended %v after the file changed", time.Since(revokedAt).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("the revoked key's stream still open 5s after the file changed")
	}
	if _, st := readSSE(ctx, t, eg.url+"/v1/conversations/rv/events", http.Header{"Authorization": {"Bearer " + keyA}}, 0); st != http.StatusUnauthorized {
		t.Errorf("a new stream of the revoked key: %d, want 401", st)
	}
	select {
	case s := <-b:
		t.Errorf("the other tenant's stream ended: %v", labels(s.evs))
	default:
	}
	write("tenants: [")
	waitFor(ctx, t, "the broken file's rejection", func() bool {
		return eg.metric(t, "switchboard_egress_tenants_reloads_total", "result", "error") == 1
	})
	if _, st := readSSE(ctx, t, eg.url+"/v1/conversations/rv/events?request_id=rb", http.Header{"Authorization": {"Bearer " + keyB}}, 1); st != http.StatusOK {
		t.Errorf("tenant b after a broken file: %d, want 200 (the running tenants stay)", st)
	}
	if n := eg.metric(t, "switchboard_egress_streams_revoked_total"); n != 1 {
		t.Errorf("streams revoked = %v, want 1", n)
	}
}
