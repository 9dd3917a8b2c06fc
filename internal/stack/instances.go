package stack

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// MaxInstances bounds the instances of one service a stack starts: every
// instance is a process of its own, and a local stack shares one machine.
const MaxInstances = 16

// Instances is how many processes of each scaled service a stack starts.
// Zero means one.
type Instances struct {
	Ingress, Router, Egress int
}

// String is the form ParseInstances reads, services in pipeline order.
func (in Instances) String() string {
	n := func(v int) int { return max(v, 1) }
	return fmt.Sprintf("%s=%d,%s=%d,%s=%d", ProcIngress, n(in.Ingress), ProcRouter, n(in.Router), ProcEgress, n(in.Egress))
}

// Apply sets the counts in cfg (Config.Ingresses, Routers, Egresses).
func (in Instances) Apply(cfg *Config) {
	cfg.Ingresses, cfg.Routers, cfg.Egresses = in.Ingress, in.Router, in.Egress
}

// ParseInstances reads service=count pairs separated by commas, e.g.
// "ingress=2,router-worker=3,egress=2". Services are ingress,
// router-worker and egress; one not named runs once; each count is
// between 1 and MaxInstances. An empty string is one of each.
func ParseInstances(s string) (Instances, error) {
	var in Instances
	if strings.TrimSpace(s) == "" {
		return in, nil
	}
	services := []string{ProcIngress, ProcRouter, ProcEgress}
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		name, count, ok := strings.Cut(part, "=")
		name, count = strings.TrimSpace(name), strings.TrimSpace(count)
		if !ok || name == "" || count == "" {
			return Instances{}, fmt.Errorf("instances %q: want service=count (e.g. %s=2), got %q", s, ProcIngress, part)
		}
		if !slices.Contains(services, name) {
			return Instances{}, fmt.Errorf("instances %q: unknown service %q (have %s)", s, name, strings.Join(services, ", "))
		}
		if seen[name] {
			return Instances{}, fmt.Errorf("instances %q: %s given twice", s, name)
		}
		seen[name] = true
		n, err := strconv.Atoi(count)
		if err != nil {
			return Instances{}, fmt.Errorf("instances %q: %s count %q is not a whole number", s, name, count)
		}
		if n < 1 || n > MaxInstances {
			return Instances{}, fmt.Errorf("instances %q: %s=%d not between 1 and %d", s, name, n, MaxInstances)
		}
		switch name {
		case ProcIngress:
			in.Ingress = n
		case ProcRouter:
			in.Router = n
		case ProcEgress:
			in.Egress = n
		}
	}
	return in, nil
}
