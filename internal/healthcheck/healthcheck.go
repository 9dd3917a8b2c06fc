// Package healthcheck is the `healthcheck` subcommand of every service
// binary: `ingress healthcheck [URL]` GETs the service's own /readyz (or
// any URL) and exits 0 on a 200 answer, 1 otherwise. Container images have
// no shell and no curl, so Docker's and Kubernetes' exec probes run the
// binary itself:
//
//	healthcheck:
//	  test: ["CMD", "/usr/local/bin/ingress", "healthcheck", "http://127.0.0.1:8080/readyz"]
package healthcheck

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Command is the first argument that selects the subcommand.
const Command = "healthcheck"

// Timeout bounds one check; Docker's own timeout should be longer.
const Timeout = 3 * time.Second

// Check GETs target and returns nil when it answers 200 within timeout.
// The error carries the status and the first line of the body (a /readyz
// answer says why it is not ready).
func Check(ctx context.Context, target string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return err
	}
	// No proxy from the environment: the target is this container itself.
	cl := &http.Client{Transport: &http.Transport{Proxy: nil}}
	defer cl.CloseIdleConnections()
	resp, err := cl.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
		return fmt.Errorf("%s: %s: %s", target, resp.Status, line)
	}
	return nil
}

// Main runs the subcommand with args (what follows "healthcheck": at most
// one URL; defaultURL when none) and returns the process's exit code. It
// prints the answer's first line to stdout when healthy and the reason to
// stderr when not.
func Main(args []string, defaultURL string, stdout, stderr io.Writer) int {
	target := defaultURL
	switch {
	case len(args) > 1, len(args) == 1 && strings.HasPrefix(args[0], "-"):
		fmt.Fprintf(stderr, "usage: %s [URL]   (default %s): exit 0 if URL answers 200 within %v\n", Command, defaultURL, Timeout)
		return 2
	case len(args) == 1:
		target = args[0]
	}
	if u, err := url.Parse(target); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fmt.Fprintf(stderr, "%s: %q is not an http(s) URL\n", Command, target)
		return 2
	}
	if err := Check(context.Background(), target, Timeout); err != nil {
		fmt.Fprintf(stderr, "unhealthy: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "healthy: %s\n", target)
	return 0
}
