package egress

import (
	"errors"
	"net/http"

	"github.com/switchboard-llm/switchboard/internal/tenant"
)

// authHTTP authenticates an HTTP stream request against the tenants file
// ingress also uses: the key comes from the Authorization header or, for
// browsers' EventSource and WebSocket, which cannot set headers, from
// ?access_token=. It writes the 401 itself. Without Config.Tenants every
// stream is open and ok is always true.
func (e *Egress) authHTTP(w http.ResponseWriter, r *http.Request) (tenantName string, ok bool) {
	if e.cfg.Tenants == nil {
		return "", true
	}
	key := tenant.BearerToken(r.Header.Get("Authorization"))
	if key == "" {
		key = r.URL.Query().Get("access_token")
	}
	t, err := e.cfg.Tenants.Authenticate(key)
	if err != nil {
		e.metrics.authFailed.Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="switchboard"`)
		code, msg := authError(err)
		httpError(w, http.StatusUnauthorized, code, msg)
		return "", false
	}
	return t.Name, true
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
