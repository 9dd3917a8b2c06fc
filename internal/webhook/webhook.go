// Package webhook delivers terminal results to HTTP endpoints for egress:
// every terminal result (final or error) whose request named a
// webhook_url, or whose tenant has one in the tenants file, is POSTed
// there, signed in the Standard Webhooks format with the tenant's own key
// (sign.go), once per result across all egress instances (a consumer
// group read by the key-ordered engine), in conversation order, retried
// with backoff and dead-lettered when it cannot succeed. A result's offset
// is committed only once its receiver answered 2xx or it was
// dead-lettered, so a crash or rebalance redelivers, with the same
// webhook-id, what was not; each receiver has at most MaxPerReceiver
// deliveries in flight (receiver.go). Targets must be
// on the tenant's allowlist (package allowlist, which ingress also uses to
// refuse requests naming other targets); the check is made again when
// connecting, on the resolved address.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/keyorder"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/webhook/allowlist"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Config configures webhook delivery. Zero value: webhooks off.
type Config struct {
	// Enabled turns delivery on. Every egress instance with it on joins
	// the consumer group Group; each result is delivered by one of them.
	Enabled bool
	// Group is the consumer group. Default "switchboard-egress-webhooks".
	Group string
	// InstanceID, when set, makes this egress a static member of Group
	// (KIP-345): restarted within SessionTimeout, it gets its partitions
	// back at once; stopped, it does not leave the group. Unique within
	// the group and stable across restarts (e.g. the pod's name).
	InstanceID string
	// SessionTimeout is how long the group waits for a silent member
	// before its partitions go to another egress. Default 20s.
	SessionTimeout time.Duration
	// Allow lists targets every tenant's deliveries may go to (package
	// allowlist), besides the tenants file's lists. A target on no list
	// is dead-lettered without a request.
	Allow []string
	// Secret is the global signing secret (see ParseSecret): tenants
	// without a secret of their own (webhook_secret_env in the tenants
	// file) sign with a key derived from it and their name (TenantKey).
	// Required when Enabled, at least MinSecretBytes.
	Secret []byte
	// MaxAttempts bounds the tries of one delivery; then it is
	// dead-lettered. Default 6.
	MaxAttempts int
	// Backoff is the wait after the first failed try; it doubles (with
	// ±20% jitter) up to MaxBackoff. A Retry-After answer is honoured up
	// to MaxBackoff. Defaults 500ms and 30s.
	Backoff, MaxBackoff time.Duration
	// Timeout bounds one try. Default 10s.
	Timeout time.Duration
	// MaxInFlight bounds deliveries in flight at once (one per
	// conversation at most). Default 256.
	MaxInFlight int
	// MaxPerReceiver bounds the deliveries in flight to one receiver (a
	// target's scheme, host and port), their retries and waits between
	// tries included, so a slow or dead receiver holds at most this share
	// of MaxInFlight. A delivery whose receiver is at the bound waits
	// without a place in MaxInFlight, first of its conversation. Default
	// MaxInFlight/4 (at least 1).
	MaxPerReceiver int
	// StartWindow is how far back a group with no committed offsets (the
	// first start, or offsets expired) begins: results older than that are
	// not delivered. Default 5m.
	StartWindow time.Duration
}

// SetDefaults fills in the defaults of zero fields.
func (c *Config) SetDefaults() {
	if c.Group == "" {
		c.Group = "switchboard-egress-webhooks"
	}
	if c.MaxAttempts == 0 {
		c.MaxAttempts = 6
	}
	if c.Backoff == 0 {
		c.Backoff = 500 * time.Millisecond
	}
	if c.MaxBackoff == 0 {
		c.MaxBackoff = 30 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Second
	}
	if c.MaxInFlight == 0 {
		c.MaxInFlight = 256
	}
	if c.MaxPerReceiver == 0 {
		c.MaxPerReceiver = max(1, c.MaxInFlight/4)
	}
	if c.StartWindow == 0 {
		c.StartWindow = 5 * time.Minute
	}
}

// Validate reports the first configuration error.
func (c *Config) Validate() error {
	if !c.Enabled {
		return nil
	}
	switch {
	case len(c.Secret) < MinSecretBytes:
		return fmt.Errorf("webhooks need a signing secret of at least %d bytes", MinSecretBytes)
	case c.MaxAttempts < 1 || c.Backoff < 0 || c.MaxBackoff < c.Backoff || c.Timeout <= 0 || c.MaxInFlight < 1 || c.MaxPerReceiver < 1 || c.StartWindow < 0 || c.SessionTimeout < 0:
		return errors.New("webhook attempts, backoffs, timeout and in-flight bound must be positive")
	}
	_, err := allowlist.Parse(c.Allow)
	return err
}

// Dead-letter reasons of webhook deliveries (defined in envelope).
const (
	ReasonWebhookNotAllowed = envelope.ReasonWebhookNotAllowed // the target is not on the allowlist
	ReasonWebhookRejected   = envelope.ReasonWebhookRejected   // the receiver answered 4xx (not 408/429)
	ReasonWebhookFailed     = envelope.ReasonWebhookFailed     // every attempt failed
	ReasonWebhookDecode     = envelope.ReasonDecode            // the result record could not be decoded
)

// Deliverer delivers results through the key-ordered engine: one delivery
// per conversation at a time, so a conversation's results arrive in order,
// and different conversations in parallel.
type Deliverer struct {
	cfg     Config
	log     *slog.Logger
	tenants func() *tenant.Set // the current tenants (they may be reloaded)
	allow   *allowlist.List    // Config.Allow
	engine  *keyorder.Engine
	dlq     string
	m       *webhookMetrics
	sleep   func(ctx context.Context, d time.Duration) error
	// receivers bounds each receiver's deliveries (Config.MaxPerReceiver).
	receivers *receivers

	// lookup resolves target hosts (nil: the system's; tests replace it).
	lookup allowlist.Lookup

	mu sync.Mutex // guards delivered, order, floors and targets
	// targets holds, per tenant name, its allowlist, key and HTTP client.
	targets   map[string]*target
	delivered map[string]bool
	order     []string
	// floors holds, for each partition the group had no committed offset
	// for when it was assigned, the oldest record timestamp to deliver:
	// StartWindow before the assignment (see startFloors).
	floors map[floorKey]time.Time
}

type floorKey struct {
	topic     string
	partition int32
}

// maxDelivered bounds the request IDs remembered as delivered (repeated
// terminal results of a rerun are not delivered again while remembered).
const maxDelivered = 1 << 16

type webhookMetrics struct {
	deliveries *prometheus.CounterVec // outcome
	attempts   *prometheus.CounterVec // status
	dropped    *prometheus.CounterVec // reason
	seconds    prometheus.Histogram
	busy       prometheus.Counter
}

func newWebhookMetrics(reg prometheus.Registerer) *webhookMetrics {
	m := &webhookMetrics{
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_webhook_deliveries_total",
			Help: "Webhook deliveries finished, by outcome (delivered, dead_letter).",
		}, []string{"outcome"}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_webhook_attempts_total",
			Help: "Webhook requests made, by result (2xx, 4xx, 5xx, error).",
		}, []string{"status"}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "switchboard_egress_webhook_duplicates_dropped_total",
			Help: "Terminal results not delivered again, by reason (repeated_terminal).",
		}, []string{"reason"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "switchboard_egress_webhook_request_seconds",
			Help:    "Duration of one webhook request.",
			Buckets: prometheus.DefBuckets,
		}),
		busy: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "switchboard_egress_webhook_receiver_busy_total",
			Help: "Times a delivery waited, without a place in the in-flight budget, because its receiver had --webhook-max-per-receiver deliveries in flight.",
		}),
	}
	reg.MustRegister(m.deliveries, m.attempts, m.dropped, m.seconds, m.busy)
	return m
}

// New returns a Deliverer of cfg that reads topics in its consumer group
// and dead-letters to dlq. tenants (nil: none) returns the current
// tenants, each tenant's endpoint, secret and allowlist; a reload takes
// effect at the next delivery. Run starts it.
func New(cfg Config, topics []string, dlq string, tenants func() *tenant.Set, clientOpts []kgo.Opt,
	reg prometheus.Registerer, log *slog.Logger) (*Deliverer, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	allow, err := allowlist.Parse(cfg.Allow)
	if err != nil {
		return nil, err
	}
	if tenants == nil {
		tenants = func() *tenant.Set { return nil }
	}
	if err := CheckSecrets(tenants()); err != nil {
		return nil, err
	}
	w := &Deliverer{cfg: cfg, log: log, tenants: tenants, allow: allow, dlq: dlq, targets: map[string]*target{},
		m: newWebhookMetrics(reg), sleep: sleepCtx, receivers: newReceivers(cfg.MaxPerReceiver), delivered: map[string]bool{}, floors: map[floorKey]time.Time{}}
	w.engine, err = keyorder.New(keyorder.Config{
		Group:          cfg.Group,
		InstanceID:     cfg.InstanceID,
		SessionTimeout: cfg.SessionTimeout,
		Topics:         topics,
		MaxInFlight:    cfg.MaxInFlight,
		Handler:        w.handle,
		// A partition without a committed offset starts at the log's start,
		// and records older than StartWindow at assignment are skipped by
		// timestamp (startFloors, handle). Resetting to AfterMilli instead
		// raced with records written while the listing was resolved and
		// could skip the first records of a partition.
		ClientOpts: append(clientOpts,
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
			kgo.AdjustFetchOffsetsFn(w.startFloors)),
		MetricsPrefix: "switchboard_egress_webhook",
		Registry:      reg,
		Logger:        log,
		// A delivery can wait out its retries; the partition's next owner
		// redoes whatever is cut off.
		RevokeTimeout:   5 * time.Second,
		ShutdownTimeout: 5 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

// Run delivers until ctx is done, then waits (bounded) for the deliveries
// in flight, commits and leaves the group.
func (w *Deliverer) Run(ctx context.Context) error { return w.engine.Run(ctx) }

// Close releases a Deliverer whose Run is never called (the process failed
// to start); it never joined the group. Do not call it after Run.
func (w *Deliverer) Close() { w.engine.Close() }

// Status reports the delivery group membership and the partitions this
// instance delivers (see keyorder.Status).
func (w *Deliverer) Status() keyorder.Status { return w.engine.Status() }

// target is where one tenant's deliveries may go and how they are signed.
type target struct {
	allow *allowlist.List
	key   []byte
	http  *http.Client
	of    *tenant.Set // the tenants it was made from: a reload makes it anew
}

// CheckSecrets checks the format of the tenants' own webhook secrets (nil
// set: none); egress refuses a tenants file, at start or reload, that has
// a malformed one.
func CheckSecrets(set *tenant.Set) error {
	if set == nil {
		return nil
	}
	for _, t := range set.Tenants() {
		if len(t.WebhookSecret) > 0 {
			if _, err := ParseSecret(string(t.WebhookSecret)); err != nil {
				return fmt.Errorf("tenant %q: %s: %w", t.Name, t.WebhookSecretEnv, err)
			}
		}
	}
	return nil
}

// target returns tenant name's allowlist (the global one and the tenants
// file's), signing key (its own secret, or one derived from the global
// secret) and an HTTP client that connects only where that list allows.
// A tenant of the file has its own client, so a connection is never reused
// for a tenant whose list would not have allowed it; tenants the file does
// not know (results written straight to Kafka) all have the same list and
// share one, so records cannot grow the cache.
func (w *Deliverer) target(name string) (*target, error) {
	set := w.tenants()
	tn := set.Tenant(name)
	cacheKey := name
	if tn == nil {
		cacheKey = "\x00unknown"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	t := w.targets[cacheKey]
	if t != nil && t.of != set { // the tenants were reloaded: their lists or secrets may differ
		t.http.CloseIdleConnections()
		t = nil
	}
	if t == nil {
		t = &target{allow: allowlist.Union(w.allow, set.WebhookAllow(name)), key: TenantKey(w.cfg.Secret, name), of: set}
		if tn != nil && len(tn.WebhookSecret) > 0 {
			key, err := ParseSecret(string(tn.WebhookSecret))
			if err != nil {
				return nil, fmt.Errorf("tenant %q: webhook secret: %w", name, err)
			}
			t.key = key
		}
		dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
		t.http = &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // never through an environment proxy: the allowlist must see the target
				DialContext:         t.allow.DialContext(dialer, w.lookup),
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     90 * time.Second,
				TLSHandshakeTimeout: 5 * time.Second,
			},
			// A redirect could lead anywhere: it counts as a failed attempt.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
		w.targets[cacheKey] = t
	}
	if tn == nil {
		own := *t
		own.key = TenantKey(w.cfg.Secret, name)
		return &own, nil
	}
	return t, nil
}

// startFloors runs before fetching of newly assigned partitions begins: a
// partition whose offset is not a committed one (the reset: the log's
// start) gets a timestamp floor StartWindow before now; a committed one
// none, so a backlog left by an earlier member is delivered whatever its
// age.
func (w *Deliverer) startFloors(_ context.Context, offsets map[string]map[int32]kgo.Offset) (map[string]map[int32]kgo.Offset, error) {
	floor := time.Now().Add(-w.cfg.StartWindow)
	w.mu.Lock()
	defer w.mu.Unlock()
	for topic, parts := range offsets {
		for p, o := range parts {
			if o.EpochOffset().Offset < 0 {
				w.floors[floorKey{topic, p}] = floor
			} else {
				delete(w.floors, floorKey{topic, p})
			}
		}
	}
	return offsets, nil
}

// tooOld reports whether rec predates its partition's start floor.
func (w *Deliverer) tooOld(rec *kgo.Record) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	f, ok := w.floors[floorKey{rec.Topic, rec.Partition}]
	return ok && rec.Timestamp.Before(f)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// handle is the engine's handler: it returns nil once rec is delivered
// (a 2xx), dead-lettered or needs no delivery, so the engine commits past
// rec only then; keyorder.Later when rec's receiver is at its bound; and
// an error only when a dead letter could not be written or ctx ended (the
// engine then tries rec again, or leaves it to the partition's next
// owner).
func (w *Deliverer) handle(ctx context.Context, rec *kgo.Record) error {
	if rec.Attrs.IsControl() || w.tooOld(rec) {
		return nil
	}
	res, err := envelope.DecodeResult(rec)
	if err != nil {
		return w.deadLetter(ctx, rec, ReasonWebhookDecode, err.Error(), "", 0)
	}
	if res.GetChunk() != nil {
		return nil // webhooks carry terminal results only
	}
	dest := res.GetWebhookUrl()
	if t := w.tenants().Tenant(res.GetTenant()); t != nil && dest == "" {
		dest = t.WebhookURL
	}
	if dest == "" {
		return nil
	}
	if w.seen(res.GetRequestId()) {
		w.m.dropped.WithLabelValues(dropRepeatedTerminal).Inc()
		return nil
	}
	tg, err := w.target(res.GetTenant())
	if err != nil {
		return w.finish(ctx, rec, res, ReasonWebhookNotAllowed, err.Error(), 0)
	}
	u, err := url.Parse(dest)
	if err == nil {
		err = tg.allow.Check(u)
	}
	if err != nil {
		return w.finish(ctx, rec, res, ReasonWebhookNotAllowed, err.Error(), 0)
	}
	// Before the body is made: a delivery may ask many times.
	rc := receiverOf(u)
	if !w.receivers.acquire(rc) {
		w.m.busy.Inc()
		return keyorder.Later(jitter(receiverBusyWait))
	}
	defer w.receivers.release(rc)
	var body bytes.Buffer
	if err := appendAnswerJSON(&body, res, w.tenants().Tenant(res.GetTenant())); err != nil {
		return w.finish(ctx, rec, res, ReasonWebhookDecode, err.Error(), 0)
	}
	delivery := deliveryID(tg.key, rec)
	backoff := w.cfg.Backoff
	var lastErr error
	for attempt := 1; attempt <= w.cfg.MaxAttempts; attempt++ {
		retryAfter, permanent, err := w.post(ctx, tg, dest, body.Bytes(), res.GetRequestId(), delivery, attempt)
		if err == nil {
			w.m.deliveries.WithLabelValues("delivered").Inc()
			w.remember(res.GetRequestId())
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		lastErr = err
		if permanent {
			reason := ReasonWebhookRejected
			if errors.Is(err, allowlist.ErrNotAllowed) { // the name resolved to an address not allowed
				reason = ReasonWebhookNotAllowed
			}
			return w.finish(ctx, rec, res, reason, err.Error(), int32(attempt))
		}
		if attempt == w.cfg.MaxAttempts {
			break
		}
		wait := jitter(backoff)
		if retryAfter > wait {
			wait = min(retryAfter, w.cfg.MaxBackoff)
		}
		w.log.Info("webhook delivery failed; retrying", "request_id", res.GetRequestId(),
			"conversation_id", res.GetConversationId(), "attempt", attempt, "backoff", wait, "err", err)
		if err := w.sleep(ctx, wait); err != nil {
			return err
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
	return w.finish(ctx, rec, res, ReasonWebhookFailed, lastErr.Error(), int32(w.cfg.MaxAttempts))
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
}

// post makes one delivery attempt. permanent: the receiver refused the
// request itself (4xx other than 408 and 429); retrying will not help.
func (w *Deliverer) post(ctx context.Context, tg *target, dest string, body []byte, requestID, delivery string, attempt int) (retryAfter time.Duration, permanent bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, w.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, dest, bytes.NewReader(body))
	if err != nil {
		return 0, true, err
	}
	id := requestID
	if id == "" {
		id = delivery
	}
	ts := time.Now().Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "switchboard-egress")
	req.Header.Set(HeaderID, id)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(tg.key, id, ts, body))
	req.Header.Set(HeaderRequestID, requestID)
	req.Header.Set(HeaderDeliveryID, delivery)
	req.Header.Set(HeaderAttempt, strconv.Itoa(attempt))
	start := time.Now()
	resp, err := tg.http.Do(req)
	w.m.seconds.Observe(time.Since(start).Seconds())
	if err != nil {
		w.m.attempts.WithLabelValues("error").Inc()
		return 0, errors.Is(err, allowlist.ErrNotAllowed), err
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // drained for connection reuse; the status decided
	resp.Body.Close()
	w.m.attempts.WithLabelValues(fmt.Sprintf("%dxx", resp.StatusCode/100)).Inc()
	switch {
	case resp.StatusCode >= 200 && resp.StatusCode < 300:
		return 0, false, nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		// Not followed (the target could point anywhere), but retried, as
		// docs/WEBHOOKS.md says: a moved endpoint may be back.
		return 0, false, fmt.Errorf("webhook answered %s (redirects are not followed)", resp.Status)
	case resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusRequestTimeout || resp.StatusCode >= 500:
		if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s > 0 {
			retryAfter = time.Duration(s) * time.Second
		}
		return retryAfter, false, fmt.Errorf("webhook answered %s", resp.Status)
	default:
		return 0, true, fmt.Errorf("webhook answered %s", resp.Status)
	}
}

// finish dead-letters a delivery that cannot succeed and remembers it as
// handled.
func (w *Deliverer) finish(ctx context.Context, rec *kgo.Record, res *pb.Result, reason, detail string, attempts int32) error {
	if err := w.deadLetter(ctx, rec, reason, detail, res.GetRequestId(), attempts); err != nil {
		return err
	}
	w.remember(res.GetRequestId())
	return nil
}

func (w *Deliverer) deadLetter(ctx context.Context, rec *kgo.Record, reason, detail, requestID string, attempts int32) error {
	dl, err := envelope.DeadLetter(w.dlq, rec, reason, detail, requestID, attempts)
	if err != nil {
		return err
	}
	if err := w.engine.Client().ProduceSync(ctx, dl).FirstErr(); err != nil {
		return fmt.Errorf("dead letter: %w", err)
	}
	w.m.deliveries.WithLabelValues("dead_letter").Inc()
	w.log.Warn("webhook delivery dead-lettered", "request_id", requestID, "reason", reason, "detail", detail,
		"partition", rec.Partition, "offset", rec.Offset)
	return nil
}

func (w *Deliverer) seen(id string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.delivered[id]
}

func (w *Deliverer) remember(id string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.delivered[id] {
		return
	}
	w.delivered[id] = true
	w.order = append(w.order, id)
	if len(w.order) > maxDelivered {
		delete(w.delivered, w.order[0])
		w.order = w.order[1:]
	}
}

// dropRepeatedTerminal labels a terminal result not delivered again.
const dropRepeatedTerminal = "repeated_terminal"

// appendAnswerJSON writes res as the streams write it for t's clients:
// the Answer (envelope.Answer), protojson with the .proto field names,
// compacted.
func appendAnswerJSON(buf *bytes.Buffer, res *pb.Result, t *tenant.Tenant) error {
	a := envelope.Answer(res, t.Shows(tenant.ShowBackend), t.Shows(tenant.ShowTimings))
	data, err := envelope.JSON.Marshal(a)
	if err != nil {
		return err
	}
	return json.Compact(buf, data)
}

// deliveryID names the result record a delivery carries, the same on
// every egress instance and every retry, without telling the receiver
// where it lies in the results topic (positions count other tenants'
// traffic): an HMAC of the record's place under the tenant's key.
func deliveryID(key []byte, rec *kgo.Record) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%s/%d/%d", rec.Topic, rec.Partition, rec.Offset)
	return hex.EncodeToString(m.Sum(nil)[:16])
}
