package ingress

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/webhook/allowlist"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// guard wraps an API route with the bounds one client can hold:
//
//   - it authenticates from the headers alone, before the body is read,
//     so a request without a valid key gets its 401 at once (the
//     connection is then closed rather than drained of an unread body);
//   - it caps the tenant's open requests and WebSocket connections at
//     MaxConnsPerTenant (429 too_many_connections beyond);
//   - it gives a plain request BodyTimeout to send its body and
//     WriteTimeout to take its answer, from the end of its headers (a
//     WebSocket keeps its own limits once upgraded).
//
// The handler authenticates again (cheaply: one digest) and finds the
// same tenant. write answers the guard's own failures (in the native or
// the OpenAI shape).
func (in *Ingress) guard(next http.HandlerFunc, write func(http.ResponseWriter, *failure)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		t, f := in.admitConn(r.Header.Get("Authorization"))
		if f != nil {
			in.reject("http", f)
			if r.ContentLength != 0 {
				w.Header().Set("Connection", "close") // do not wait for a body nobody reads
			}
			write(w, f)
			return
		}
		defer in.tenantConns.release(t.Name)
		if r.Header.Get("Upgrade") == "" {
			rc := http.NewResponseController(w)
			now := time.Now()
			_ = rc.SetReadDeadline(now.Add(in.cfg.BodyTimeout))
			_ = rc.SetWriteDeadline(now.Add(in.cfg.WriteTimeout))
		}
		next(w, r)
	}
}

// admitConn authenticates an Authorization header and takes one of the
// tenant's MaxConnsPerTenant slots; the caller releases it.
func (in *Ingress) admitConn(header string) (*tenant.Tenant, *failure) {
	t, f := in.authenticate(header)
	if f == nil && !in.tenantConns.acquire(t.Name) {
		f = &failure{status: http.StatusTooManyRequests, code: "too_many_connections", retryAfter: time.Second,
			message: "the tenant has too many open requests, WebSocket connections and gRPC calls"}
	}
	return t, f
}

// grpcGuardUnary and grpcGuardStream are guard for the gRPC API: a call of
// switchboard.v1.Ingress is authenticated before its handler runs and
// holds one of its tenant's slots while it runs (a SubmitStream for as
// long as it is open). Reflection is not guarded.
func (in *Ingress) grpcGuardUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (any, error) {
	release, err := in.grpcAdmit(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	defer release()
	return next(ctx, req)
}

func (in *Ingress) grpcGuardStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	release, err := in.grpcAdmit(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	defer release()
	return next(srv, ss)
}

func (in *Ingress) grpcAdmit(ctx context.Context, method string) (release func(), err error) {
	if !strings.HasPrefix(method, "/"+pb.Ingress_ServiceDesc.ServiceName+"/") {
		return func() {}, nil
	}
	t, f := in.admitConn(grpcAuthorization(ctx))
	if f != nil {
		in.reject("grpc", f)
		return nil, grpcStatus(f)
	}
	return func() { in.tenantConns.release(t.Name) }, nil
}

// openTenants is cfg's tenants: the file, kept current, or the fixed set.
// Ingress sends no webhooks, so it reads none of their secrets.
func openTenants(cfg Config, m *metrics) (*tenant.Live, error) {
	if cfg.TenantsFile == "" {
		return tenant.StaticLive(cfg.Tenants), nil
	}
	return tenant.OpenLive(cfg.TenantsFile, tenant.LiveOptions{
		Logger: cfg.Logger,
		Report: func(err error) {
			if err != nil {
				m.tenantsReloads.WithLabelValues("error").Inc()
				return
			}
			m.tenantsReloads.WithLabelValues("ok").Inc()
		},
	})
}

// errRevoked is the failure of a stream whose API key a tenants reload
// revoked.
var errRevoked = &failure{status: http.StatusUnauthorized, code: "api_key_revoked", message: "the API key was revoked"}

// stillValid re-authenticates an open stream's header after a tenants
// reload: it returns the tenant as the new file has it, or errRevoked.
func (in *Ingress) stillValid(protocol, header string) (*tenant.Tenant, *failure) {
	t, f := in.authenticate(header)
	if f != nil {
		in.reject(protocol, errRevoked)
		return nil, errRevoked
	}
	return t, nil
}

// counter caps concurrent holders per name; limit 0 is no cap.
type counter struct {
	limit int
	mu    sync.Mutex
	n     map[string]int
}

func newCounter(limit int) *counter { return &counter{limit: limit, n: map[string]int{}} }

func (c *counter) acquire(name string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.limit > 0 && c.n[name] >= c.limit {
		return false
	}
	c.n[name]++
	return true
}

func (c *counter) release(name string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n[name]--; c.n[name] <= 0 {
		delete(c.n, name)
	}
}

// checkWebhook refuses a webhook_url that no allowlist of the tenant
// allows (ingress's --webhook-allow, the tenants file's top-level and the
// tenant's own webhook_allow): egress would not deliver to it, so the
// request is refused now (400 webhook_not_allowed) instead of becoming a
// dead letter later.
func (in *Ingress) checkWebhook(t *tenant.Tenant, target string) *failure {
	if target == "" {
		return nil
	}
	list := allowlist.Union(in.webhookAllow, in.tenants.Set().WebhookAllow(t.Name))
	if err := list.CheckString(target); err != nil {
		return &failure{status: http.StatusBadRequest, code: "webhook_not_allowed", field: "webhook_url", message: err.Error()}
	}
	return nil
}
