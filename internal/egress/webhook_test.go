package egress

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/webhook"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// verifyWebhook is the receiver's check, as docs/WEBHOOKS.md shows it:
// the Standard Webhooks reference library with the tenant's secret.
func verifyWebhook(key []byte, h http.Header, body []byte) error {
	wh, err := standardwebhooks.NewWebhook(webhook.FormatSecret(key))
	if err != nil {
		return err
	}
	return wh.Verify(body, h)
}

// receiver is a webhook endpoint that records what it accepted.
type receiver struct {
	t       *testing.T
	secret  map[string][]byte // path -> secret
	mu      sync.Mutex
	calls   map[string]int // path -> requests
	got     map[string][]*pb.Result
	attempt map[string]string // request ID -> Switchboard-Attempt of the accepted call
	// answer decides the status for the nth call (from 1) of a path.
	answer func(path string, n int) int
}

func newReceiver(t *testing.T, answer func(path string, n int) int) (*receiver, *httptest.Server) {
	rc := &receiver{t: t, secret: map[string][]byte{}, calls: map[string]int{}, got: map[string][]*pb.Result{},
		attempt: map[string]string{}, answer: answer}
	srv := httptest.NewServer(rc)
	t.Cleanup(srv.Close)
	return rc, srv
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.calls[r.URL.Path]++
	n := rc.calls[r.URL.Path]
	secret := rc.secret[r.URL.Path]
	rc.mu.Unlock()
	if err := verifyWebhook(secret, r.Header, body); err != nil {
		rc.t.Errorf("%s: %v", r.URL.Path, err)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	status := rc.answer(r.URL.Path, n)
	if status == http.StatusOK {
		var res pb.Result
		if err := protojson.Unmarshal(body, &res); err != nil {
			rc.t.Errorf("%s: body %q: %v", r.URL.Path, body, err)
		}
		if r.Header.Get("Switchboard-Request-Id") != res.GetRequestId() || r.Header.Get("webhook-id") != res.GetRequestId() {
			rc.t.Errorf("request ID header %q, body %q", r.Header.Get("Switchboard-Request-Id"), res.GetRequestId())
		}
		rc.mu.Lock()
		rc.got[r.URL.Path] = append(rc.got[r.URL.Path], &res)
		rc.attempt[res.GetRequestId()] = r.Header.Get("Switchboard-Attempt")
		rc.mu.Unlock()
	}
	w.WriteHeader(status)
}

func (rc *receiver) requests(path string) (ids []string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, r := range rc.got[path] {
		ids = append(ids, r.GetRequestId())
	}
	return ids
}

func hookFinal(conv, tenant, id, hook string) *pb.Result {
	r := res(conv, tenant, id, "run", 1, 0, true)
	r.WebhookUrl = hook
	return r
}

// TestWebhooks: signed deliveries, once each, in conversation order;
// retries with backoff; dead letters after the last attempt, on a 4xx and
// for targets off the allowlist; tenants' own endpoints and secrets.
func TestWebhooks(t *testing.T) {
	const defaultSecret, acmeSecret = "default-secret-0123456789", "acme-secret-0123456789"
	rc, srv := newReceiver(t, func(path string, n int) int {
		switch path {
		case "/flaky":
			if n <= 2 {
				return http.StatusServiceUnavailable
			}
		case "/down":
			return http.StatusInternalServerError
		case "/reject":
			return http.StatusBadRequest
		case "/slow":
			time.Sleep(20 * time.Millisecond) // the conversation's next result must wait
		}
		return http.StatusOK
	})
	// Tenant t has no secret of its own: its key is derived from the
	// global one; acme signs with its own.
	for _, p := range []string{"/ok", "/flaky", "/down", "/reject", "/slow"} {
		rc.secret[p] = webhook.TenantKey([]byte(defaultSecret), "t")
	}
	rc.secret["/acme"] = []byte(acmeSecret)
	tenants, err := tenant.ParseEnv([]byte("tenants:\n  - name: acme\n    key_sha256: ["+tenant.HashKey("sk-acme-0123456789")+"]\n    webhook_url: "+srv.URL+"/acme\n    webhook_secret_env: ACME_SECRET\n"),
		func(name string) string { return map[string]string{"ACME_SECRET": acmeSecret}[name] })
	if err != nil {
		t.Fatal(err)
	}
	h := newHarness(t)
	eg := h.start(func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
		c.Tenants = tenants
		c.Webhooks = webhook.Config{Enabled: true, Allow: []string{srv.URL + "/"}, Secret: []byte(defaultSecret),
			MaxAttempts: 3, Backoff: 10 * time.Millisecond, MaxBackoff: 40 * time.Millisecond}
	})
	hook := func(p string) string { return srv.URL + p }
	var recs []*pb.Result
	for _, id := range []string{"s1", "s2", "s3", "s4"} {
		recs = append(recs, hookFinal("conv-slow", "t", id, hook("/slow")))
	}
	recs = append(recs,
		hookFinal("conv-flaky", "t", "f1", hook("/flaky")), // fails twice, then succeeds
		hookFinal("conv-flaky", "t", "f2", hook("/slow")),  // must wait for f1
		hookFinal("conv-down", "t", "d1", hook("/down")),   // dead-lettered after 3 attempts
		hookFinal("conv-down", "t", "d2", hook("/ok")),     // then the conversation goes on
		hookFinal("conv-reject", "t", "x1", hook("/reject")),
		hookFinal("conv-far", "t", "n1", "http://10.1.2.3/hook"), // not on the allowlist
		hookFinal("conv-acme", "acme", "a1", ""),                 // the tenant's endpoint
		res("conv-acme", "acme", "a2", "run", 1, 0, false),       // a chunk: not delivered
		hookFinal("conv-acme", "acme", "a2", ""),
		hookFinal("conv-acme", "acme", "a2", ""), // a repeated terminal: not delivered again
		hookFinal("conv-none", "t", "z1", ""),    // no webhook at all
	)
	h.produce(recs...)

	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	dls := map[string]*pb.DeadLetter{}
	for len(dls) < 3 {
		fetches := h.client.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d of 3 dead letters", len(dls))
		}
		fetches.EachRecord(func(r *kgo.Record) {
			var dl pb.DeadLetter
			if err := proto.Unmarshal(r.Value, &dl); err != nil {
				t.Fatal(err)
			}
			dls[dl.GetRequestId()] = &dl
		})
	}
	dbgDone := make(chan struct{})
	defer func() { close(dbgDone) }()
	go func() {
		select {
		case <-dbgDone:
			return
		case <-time.After(20 * time.Second):
		}
		rc.mu.Lock()
		ids := []string{}
		for _, r := range rc.got["/slow"] {
			ids = append(ids, r.GetRequestId())
		}
		t.Logf("DEBUG slowids=%v calls %v got slow=%d ok=%d acme=%d flaky=%d dls=%v", ids, rc.calls, len(rc.got["/slow"]), len(rc.got["/ok"]), len(rc.got["/acme"]), len(rc.got["/flaky"]), len(dls))
		for id, dl := range dls {
			t.Logf("DEBUG dl %s %s %d", id, dl.GetReason(), dl.GetAttempts())
		}
		rc.mu.Unlock()
	}()
	waitFor(ctx, t, "every delivery", func() bool {
		return len(rc.requests("/slow")) == 5 && len(rc.requests("/ok")) == 1 && len(rc.requests("/acme")) == 2 &&
			len(rc.requests("/flaky")) == 1
	})

	for _, tc := range []struct {
		id, reason string
		attempts   int32
	}{{"d1", webhook.ReasonWebhookFailed, 3}, {"x1", webhook.ReasonWebhookRejected, 1}, {"n1", webhook.ReasonWebhookNotAllowed, 0}} {
		dl := dls[tc.id]
		if dl == nil || dl.GetReason() != tc.reason || dl.GetAttempts() != tc.attempts || dl.GetSourceTopic() != resultsTopic {
			t.Errorf("dead letter of %s: %v, want reason %s after %d attempts", tc.id, dl, tc.reason, tc.attempts)
		}
	}
	// Conversation order: s1..s4 in order wherever f2 falls between them.
	var slow []string
	for _, id := range rc.requests("/slow") {
		if id != "f2" {
			slow = append(slow, id)
		}
	}
	if !slices.Equal(slow, []string{"s1", "s2", "s3", "s4"}) {
		t.Errorf("conv-slow delivered in the order %v, want s1..s4", slow)
	}
	rc.mu.Lock()
	if rc.calls["/flaky"] != 3 || rc.attempt["f1"] != "3" || rc.calls["/down"] != 3 || rc.calls["/reject"] != 1 {
		t.Errorf("calls: flaky %d (accepted attempt %s), down %d, reject %d; want 3 (3), 3, 1",
			rc.calls["/flaky"], rc.attempt["f1"], rc.calls["/down"], rc.calls["/reject"])
	}
	rc.mu.Unlock()
	if got := rc.requests("/acme"); !slices.Equal(got, []string{"a1", "a2"}) {
		t.Errorf("tenant endpoint got %v, want a1 a2 (once each, no chunk)", got)
	}
	if n := eg.metric(t, "switchboard_egress_webhook_duplicates_dropped_total"); n != 1 {
		t.Errorf("webhook duplicates dropped = %v, want 1", n)
	}
	if n := eg.metric(t, "switchboard_egress_webhook_deliveries_total", "outcome", "dead_letter"); n != 3 {
		t.Errorf("dead-letter deliveries = %v, want 3", n)
	}
}
