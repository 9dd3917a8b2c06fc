package main

import (
	"context"

	"golang.org/x/sync/errgroup"

	"github.com/switchboard-llm/switchboard/internal/console"
	"github.com/switchboard-llm/switchboard/internal/daemon"
	"github.com/switchboard-llm/switchboard/internal/egress"
	"github.com/switchboard-llm/switchboard/internal/webhook"
)

// runWithConsole runs egress and the console (served at /console on the
// admin listener) together; the console stops with egress.
func runWithConsole(ctx context.Context, env *daemon.Env, eg *egress.Egress, routerGroup string, w *webhook.Config) error {
	groups := []string{routerGroup}
	if w.Enabled && w.Group != "" {
		groups = append(groups, w.Group)
	}
	c, err := console.New(console.Config{Kafka: env.Kafka, Topics: env.Topics, Groups: groups,
		Logger: env.Logger.With("component", "console"), Registry: env.Registry})
	if err != nil {
		return err
	}
	h := c.Handler()
	env.HandleAdmin(console.Prefix, h)
	env.HandleAdmin(console.Prefix+"/", h)
	cctx, stopConsole := context.WithCancel(ctx)
	var g errgroup.Group
	g.Go(func() error { return c.Run(cctx) })
	err = eg.Run(ctx)
	stopConsole()
	if cerr := g.Wait(); err == nil {
		err = cerr
	}
	return err
}
