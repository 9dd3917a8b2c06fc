package main

import (
	"errors"
	"fmt"

	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	"github.com/switchboard-llm/switchboard/internal/webhook"
)

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
