package egress

import (
	"errors"
	"net/http"

	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/webhook"
)

// authHTTP authenticates an HTTP stream request against the tenants file
// ingress also uses: the key comes from the Authorization header or, for
// browsers' EventSource and WebSocket, which cannot set headers, from
// ?access_token=. It writes the 401 itself. Without Config.Tenants every
// stream is open and ok is always true.
// The key is kept in the stream's request, so that a tenants reload that
// revokes it can end the stream (session.stillValid).
func (e *Egress) authHTTP(w http.ResponseWriter, r *http.Request) (tenantName, key string, ok bool) {
	if e.tenants == nil {
		return "", "", true
	}
	key = tenant.BearerToken(r.Header.Get("Authorization"))
	if key == "" {
		key = r.URL.Query().Get("access_token")
	}
	t, err := e.tenants.Set().Authenticate(key)
	if err != nil {
		e.metrics.authFailed.Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
		code, msg := authError(err)
		httpError(w, http.StatusUnauthorized, code, msg)
		return "", "", false
	}
	return t.Name, key, true
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

// authError is the code and message of a failed authentication, the same
// as ingress's: unauthenticated without a key, invalid_api_key with a key
// no tenant has.
func authError(err error) (code, msg string) {
	if errors.Is(err, tenant.ErrNoKey) {
		return "unauthenticated", "send an API key as Authorization: Bearer KEY"
	}
	return "invalid_api_key", "the API key is not valid"
}
