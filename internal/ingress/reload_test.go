package ingress

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/switchboard-llm/switchboard/internal/tenant"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// TestTenantsReloadRevokesKeys: ingress with a tenants file reloads it on
// change. A revoked key is refused from then on (401), its open WebSocket
// gets an api_key_revoked error frame and is closed, its open gRPC
// SubmitStream ends UNAUTHENTICATED; a changed rate applies to the open
// tenant; a broken file is rejected and the running tenants stay.
func TestTenantsReloadRevokesKeys(t *testing.T) {
	const oldKey = "test-old-key"
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
	entry := func(name, key, extra string) string {
		return "  - name: " + name + "\n    key_sha256: [" + tenant.HashKey(key) + "]\n" + extra
	}
	write("tenants:\n" + entry("dev", devKey, "") + entry("old", oldKey, ""))
	reg := prometheus.NewRegistry()
	in := newIngress(t, newCluster(t), func(c *Config) {
		c.Addr, c.GRPCAddr = freeAddr(t), freeAddr(t)
		c.Tenants, c.TenantsFile, c.TenantsCheckInterval = nil, path, 20*time.Millisecond
		c.Registry = reg
	})
	r := runIngress(t, in)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	post := func(key string) int {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.url+"/v1/conversations/reload/messages",
			strings.NewReader(`{"model":"sim","messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		return res.StatusCode
	}
	if st := post(oldKey); st != http.StatusAccepted {
		t.Fatalf("old key before the reload: %d, want 202", st)
	}
	ws, _, err := dialWS(ctx, t, r.url, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	cc, err := grpc.NewClient(r.grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	stream, err := pb.NewIngressClient(cc).SubmitStream(withKey(ctx, oldKey))
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&pb.SubmitStreamRequest{CorrelationId: "1", Request: &pb.SubmitRequest{
		ConversationId: "reload", Model: "sim", Messages: []*pb.Message{{Role: "user", Content: "hi"}}}}); err != nil {
		t.Fatal(err)
	}
	if m, err := stream.Recv(); err != nil || m.GetAck() == nil {
		t.Fatalf("gRPC stream before the reload: %v %v", m, err)
	}

	// Revoke the old key; give dev a rate of 1 request a second, burst 1.
	revokedAt := time.Now()
	write("tenants:\n" + entry("dev", devKey, "    requests_per_second: 1\n    request_burst: 1\n"))
	for post(oldKey) != http.StatusUnauthorized {
		if time.Since(revokedAt) > 5*time.Second {
			t.Fatal("the revoked key is still accepted 5s after the file changed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, frame, err := ws.Read(ctx)
	var rep wsReply
	if err != nil || json.Unmarshal(frame, &rep) != nil || rep.Error == nil || rep.Error.Code != "api_key_revoked" {
		t.Errorf("the revoked key's WebSocket read %s, %v; want an api_key_revoked error frame", frame, err)
	}
	if _, _, err := ws.Read(ctx); websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("the revoked key's WebSocket then: %v, want closed with policy violation", err)
	}
	if _, err := stream.Recv(); status.Code(err) != codes.Unauthenticated {
		t.Errorf("the revoked key's gRPC stream: %v, want UNAUTHENTICATED", err)
	}
	t.Logf("revoked after %v", time.Since(revokedAt).Round(time.Millisecond))
	// dev's new rate holds: of two requests at once, the second is limited.
	if a, b := post(devKey), post(devKey); a != http.StatusAccepted || b != http.StatusTooManyRequests {
		t.Errorf("dev after its rate changed to 1/s, burst 1: %d then %d, want 202 then 429", a, b)
	}

	// A broken file is rejected: dev keeps working, the error is counted.
	write("tenants: [")
	for testutil.ToFloat64(in.metrics.tenantsReloads.WithLabelValues("error")) == 0 {
		if time.Since(revokedAt) > 10*time.Second {
			t.Fatal("the broken file was not reported")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(time.Second) // dev's bucket refills
	if st := post(devKey); st != http.StatusAccepted {
		t.Errorf("dev after a broken file: %d, want 202 (the running tenants stay)", st)
	}
	if ok := testutil.ToFloat64(in.metrics.tenantsReloads.WithLabelValues("ok")); ok != 1 {
		t.Errorf("tenants reloads ok = %v, want 1", ok)
	}
}
