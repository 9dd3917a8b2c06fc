package presence

// Floor is the least an instance holds of a tenant's limit, as a fraction
// of an even split: with N live instances, an instance without demand for
// a busy tenant still holds Floor/N of its weight, so that traffic moving
// to it is served (slowly) at once and shows up as demand at the next
// interval. The floors of idle instances are capacity nobody uses: at most
// Floor of the limit in all.
const Floor = 0.05

// Share is the fraction (0 to 1) of a tenant's limit that one instance
// holds, for each of the tenant's two buckets.
type Share struct {
	Requests, Tokens float64
}

// Shares is one instance's part of every tenant's limit.
type Shares struct {
	// Instances is how many instances the limits are divided among, this
	// one included.
	Instances int
	// Degraded is set while the instance cannot see the presence topic
	// (Kafka unreachable, the topic missing or unreadable): then every
	// tenant is split evenly among the instances last seen.
	Degraded bool
	// Tenants holds the share of every tenant some live instance has
	// demand for.
	Tenants map[string]Share
}

// Even returns the shares of n instances that know nothing of demand:
// 1/n of every limit.
func Even(n int, degraded bool) Shares {
	return Shares{Instances: max(1, n), Degraded: degraded}
}

// Of returns the share of tenant: its entry in Tenants, or 1/Instances
// when no live instance has demand for it.
func (s Shares) Of(tenant string) Share {
	if sh, ok := s.Tenants[tenant]; ok {
		return sh
	}
	even := 1 / float64(max(1, s.Instances))
	return Share{Requests: even, Tokens: even}
}

// Compute returns the shares of instance self among the live instances,
// given each one's latest demand by tenant (live must hold self). For each
// tenant and bucket, instance i holds
//
//	max(d_i, Floor·D/N) / Σ_j max(d_j, Floor·D/N)
//
// where d_i is its demand, D the sum of all and N the live count, or 1/N
// when D is 0. Every instance computes from the same records, so the
// shares of all instances add up to 1 (the whole limit). While every
// instance sees at least as much demand as its share admits, every share
// is used and the tenant gets its whole limit; an instance without demand
// keeps its floor unused.
func Compute(self string, live map[string]map[string]Demand) Shares {
	s := Shares{Instances: len(live), Tenants: map[string]Share{}}
	if _, ok := live[self]; !ok {
		s.Instances++
	}
	n := float64(s.Instances)
	for _, byTenant := range live {
		for name := range byTenant {
			if _, done := s.Tenants[name]; done {
				continue
			}
			var sumR, sumT float64
			for _, other := range live {
				sumR += other[name].Requests
				sumT += other[name].Tokens
			}
			floorR, floorT := Floor*sumR/n, Floor*sumT/n
			var wR, wT float64
			for _, other := range live {
				wR += max(other[name].Requests, floorR)
				wT += max(other[name].Tokens, floorT)
			}
			own := live[self][name]
			if _, ok := live[self]; !ok { // not yet in its own view: weigh it at the floor
				wR, wT = wR+floorR, wT+floorT
			}
			s.Tenants[name] = Share{Requests: part(own.Requests, floorR, wR, n), Tokens: part(own.Tokens, floorT, wT, n)}
		}
	}
	return s
}

// part is one instance's fraction: its weight over the total weight, or
// an even split when nobody has demand.
func part(own, floor, total, n float64) float64 {
	if total <= 0 {
		return 1 / n
	}
	return max(own, floor) / total
}
