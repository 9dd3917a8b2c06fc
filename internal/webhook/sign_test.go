package webhook

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestSignVerifiesWithStandardWebhooks: a signature verifies with the
// Standard Webhooks reference library given the tenant's secret in its
// whsec_ form, and not with another tenant's.
func TestSignVerifiesWithStandardWebhooks(t *testing.T) {
	global := []byte("global-secret-0123456789")
	acme, other := TenantKey(global, "acme"), TenantKey(global, "other")
	body := []byte(`{"request_id":"r1","final":{"content":"hi"}}`)
	ts := time.Now().Unix()
	h := http.Header{}
	h.Set(HeaderID, "r1")
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, Sign(acme, "r1", ts, body))

	wh, err := standardwebhooks.NewWebhook(FormatSecret(acme))
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(body, h); err != nil {
		t.Errorf("the reference verifier refused our signature: %v", err)
	}
	if err := wh.Verify([]byte(`{"request_id":"r2"}`), h); err == nil {
		t.Error("a changed body verified")
	}
	h2 := h.Clone()
	h2.Set(HeaderID, "r2")
	if err := wh.Verify(body, h2); err == nil {
		t.Error("a changed webhook-id verified")
	}
	whOther, _ := standardwebhooks.NewWebhook(FormatSecret(other))
	if err := whOther.Verify(body, h); err == nil {
		t.Error("another tenant's key verified acme's delivery")
	}
	old := h.Clone()
	old.Set(HeaderTimestamp, strconv.FormatInt(ts-3600, 10))
	old.Set(HeaderSignature, Sign(acme, "r1", ts-3600, body))
	if err := wh.Verify(body, old); err == nil {
		t.Error("an hour-old delivery verified")
	}
}

func TestTenantKey(t *testing.T) {
	g := []byte("global-secret-0123456789")
	a, b := TenantKey(g, "acme"), TenantKey(g, "beta")
	if len(a) != 32 || bytes.Equal(a, b) || bytes.Equal(a, TenantKey([]byte("another-global-secret"), "acme")) {
		t.Errorf("tenant keys: %x, %x: want 32 bytes, different per tenant and per global secret", a, b)
	}
	if !bytes.Equal(a, TenantKey(g, "acme")) {
		t.Error("the derivation is not deterministic")
	}
	// RFC 5869 HKDF-SHA256 with an empty salt, pinned so a change of the
	// derivation (which would break every receiver) fails here.
	if got := FormatSecret(TenantKey([]byte("0123456789abcdef"), "dev")); got != pinnedDevSecret {
		t.Errorf("derived secret of dev = %s, want %s", got, pinnedDevSecret)
	}
}

// Computed independently (Python hmac: extract with a zero salt, one
// expand block).
const pinnedDevSecret = "whsec_95+3EPh4eSuU6z9NaUw0RfP358j7hb1Pzkry/cAOqSI="

func TestParseSecret(t *testing.T) {
	key := []byte("0123456789abcdef0123")
	for _, tc := range []struct {
		in   string
		want []byte
		ok   bool
	}{
		{FormatSecret(key), key, true},
		{"a-raw-secret-of-enough-bytes", []byte("a-raw-secret-of-enough-bytes"), true},
		{"short", nil, false},
		{"whsec_!!!", nil, false},
		{"whsec_" + "YWJj", nil, false}, // decodes to 3 bytes
	} {
		got, err := ParseSecret(tc.in)
		if (err == nil) != tc.ok || !bytes.Equal(got, tc.want) {
			t.Errorf("ParseSecret(%q) = %q, %v; want %q, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}
