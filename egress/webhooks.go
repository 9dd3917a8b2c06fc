package main

import (
	"errors"
	"fmt"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/webhook"
)

// webhookFlags defines the flags of webhook delivery.
func webhookFlags(f *daemon.Flags, w *webhook.Config, printSecret *string) {
	f.Bool(&w.Enabled, "webhooks", "deliver terminal results to webhooks (consumer group --webhook-group)")
	f.String(&w.Group, "webhook-group", "consumer group of webhook delivery")
	f.String(&w.InstanceID, "webhook-instance-id", "static membership ID in --webhook-group, unique and stable across restarts (e.g. the pod name): a restart within --webhook-session-timeout gets the partitions back at once (empty: dynamic member)", daemon.FromEnv("SWITCHBOARD_INSTANCE_ID"))
	f.Duration(&w.SessionTimeout, "webhook-session-timeout", "how long the webhook group waits for a silent member before reassigning its partitions (0: 20s)")
	f.List(&w.Allow, "webhook-allow", "comma-separated webhook targets every tenant may use, besides the tenants file's lists: [scheme://]host[:port][/path-prefix] (docs/WEBHOOKS.md)")
	f.String(printSecret, "print-webhook-secret", "print the named tenant's webhook signing secret (whsec_…, derived from SWITCHBOARD_WEBHOOK_SECRET unless the tenants file names its own) and exit")
	f.Int(&w.MaxAttempts, "webhook-max-attempts", "tries of one webhook delivery before it is dead-lettered")
	f.Duration(&w.Backoff, "webhook-backoff", "wait after the first failed webhook try (doubles each time)")
	f.Duration(&w.MaxBackoff, "webhook-max-backoff", "longest wait between webhook tries")
	f.Duration(&w.Timeout, "webhook-timeout", "bound of one webhook request")
	f.Int(&w.MaxInFlight, "webhook-max-in-flight", "webhook deliveries in flight at once (one per conversation at most)")
	f.Int(&w.MaxPerReceiver, "webhook-max-per-receiver", "webhook deliveries in flight to one receiver (scheme, host and port), retries included, so a slow or dead receiver holds at most this share (0: a quarter of --webhook-max-in-flight)")
	f.Duration(&w.StartWindow, "webhook-start-window", "how far back webhook delivery begins when its group has no committed offsets")
}

// globalSecret reads the global webhook secret, SWITCHBOARD_WEBHOOK_SECRET.
func globalSecret(getenv func(string) string) ([]byte, error) {
	v := getenv("SWITCHBOARD_WEBHOOK_SECRET")
	if v == "" {
		return nil, errors.New("webhooks need the global signing secret in SWITCHBOARD_WEBHOOK_SECRET")
	}
	key, err := webhook.ParseSecret(v)
	if err != nil {
		return nil, fmt.Errorf("SWITCHBOARD_WEBHOOK_SECRET: %w", err)
	}
	return key, nil
}

// printWebhookSecret prints the secret a tenant's receivers verify with.
func printWebhookSecret(env *daemon.Env, name, tenantsFile string) error {
	if tenantsFile != "" {
		set, err := tenant.LoadEnv(tenantsFile, env.Getenv)
		if err != nil {
			return err
		}
		if t := set.Tenant(name); t == nil {
			return fmt.Errorf("no tenant %q in %s", name, tenantsFile)
		} else if len(t.WebhookSecret) > 0 {
			key, err := webhook.ParseSecret(string(t.WebhookSecret))
			if err != nil {
				return err
			}
			fmt.Fprintln(env.Stdout, webhook.FormatSecret(key))
			return nil
		}
	}
	global, err := globalSecret(env.Getenv)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.Stdout, webhook.FormatSecret(webhook.TenantKey(global, name)))
	return nil
}
