package egress

import (
	"cmp"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/webhook"
)

// authHTTP authenticates an HTTP stream request against the tenants file
// ingress also uses: an API key in the Authorization header, or, for
// browsers' EventSource and WebSocket, which cannot set headers, a stream
// token (streamtoken.go) in ?token= or the WebSocket subprotocol
// "switchboard.token.TOKEN". API keys are never taken from the URL. It
// writes the 401 itself. Without tenants every stream is open and ok is
// always true.
func (e *Egress) authHTTP(w http.ResponseWriter, r *http.Request) (tenantName string, cred credential, ok bool) {
	if e.tenants == nil {
		return "", credential{}, true
	}
	fail := func(code, msg string) (string, credential, bool) {
		e.unauthorized(w, code, msg)
		return "", credential{}, false
	}
	set := e.tenants.Set()
	key := tenant.BearerToken(r.Header.Get("Authorization"))
	text := cmp.Or(r.URL.Query().Get("token"), tokenProtocol(r))
	if key != "" || text == "" {
		t, err := set.Authenticate(key)
		if err != nil {
			return fail(authError(err))
		}
		return t.Name, credential{key: key}, true
	}
	tok, err := e.tokens.open(text)
	switch {
	case err != nil:
		return fail("invalid_token", "the stream token is not valid")
	case !tok.allows(r.PathValue("conversation_id"), time.Now()):
		return fail("invalid_token", "the stream token has expired or is not for this conversation")
	case !set.HasKeyTag(tok.tenant, tok.keyTag):
		return fail("invalid_token", "the API key that made the stream token was revoked")
	}
	return tok.tenant, credential{token: &tok}, true
}

// unauthorized answers a request that failed authentication: 401 with a
// WWW-Authenticate challenge, counted.
func (e *Egress) unauthorized(w http.ResponseWriter, code, msg string) {
	e.metrics.authFailed.Inc()
	w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
	httpError(w, http.StatusUnauthorized, code, msg)
}

// tokenProtocol returns the stream token offered as the WebSocket
// subprotocol "switchboard.token.TOKEN", or "".
func tokenProtocol(r *http.Request) string {
	for _, h := range r.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(h, ",") {
			if tok, ok := strings.CutPrefix(strings.TrimSpace(p), tokenProtocolPrefix); ok {
				return tok
			}
		}
	}
	return ""
}

// credential is how a stream authenticated: an API key, or a stream token
// (nil without API keys).
type credential struct {
	key   string
	token *streamToken
}

// valid reports whether the credential still holds under set, after a
// tenants reload: the key is still a tenant's, or the token's key is.
func (c credential) valid(set *tenant.Set) bool {
	if c.token != nil {
		return set.HasKeyTag(c.token.tenant, c.token.keyTag)
	}
	_, err := set.Authenticate(c.key)
	return err == nil
}

// authError is the code and message of a failed authentication, the same
// as ingress's: unauthenticated without a key, invalid_api_key with a key
// no tenant has.
func authError(err error) (code, msg string) {
	if errors.Is(err, tenant.ErrNoKey) {
		return "unauthenticated", "send an API key as Authorization: Bearer KEY"
	}
	return "invalid_api_key", "the API key is not valid"
}

// openTenants is cfg's tenants: the file, kept current, the fixed set, or
// nil without keys. A file whose webhook secrets are malformed is refused.
func openTenants(cfg Config, m *metrics) (*tenant.Live, error) {
	switch {
	case cfg.TenantsFile != "":
		return tenant.OpenLive(cfg.TenantsFile, tenant.LiveOptions{
			Getenv: cfg.TenantsGetenv,
			Check:  webhook.CheckSecrets,
			Logger: cfg.Logger,
			Report: func(err error) {
				if err != nil {
					m.reloads.WithLabelValues("error").Inc()
					return
				}
				m.reloads.WithLabelValues("ok").Inc()
			},
		})
	case cfg.Tenants != nil:
		return tenant.StaticLive(cfg.Tenants), nil
	}
	return nil, nil
}

// tenantSet is the current tenants; nil without API keys.
func (e *Egress) tenantSet() *tenant.Set {
	if e.tenants == nil {
		return nil
	}
	return e.tenants.Set()
}

// tenantsChanged is closed at the next tenants reload (nil, never, without
// API keys).
func (e *Egress) tenantsChanged() <-chan struct{} {
	if e.tenants == nil {
		return nil
	}
	return e.tenants.Changed()
}
