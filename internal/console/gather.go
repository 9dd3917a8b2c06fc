package console

import (
	"context"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
)

// Group is a consumer group as the page shows it.
type Group struct {
	Name     string `json:"name"`
	State    string `json:"state"`
	Protocol string `json:"protocol,omitempty"`
	// Lag is the sum of its partitions' lag (-1: unknown).
	Lag     int64    `json:"lag"`
	Members []Member `json:"members"`
	// Partitions are the lag of each partition it consumes.
	Partitions []PartitionLag `json:"partitions"`
	Error      string         `json:"error,omitempty"`
}

// Member is one member of a group.
type Member struct {
	MemberID   string             `json:"member_id"`
	InstanceID string             `json:"instance_id,omitempty"`
	ClientID   string             `json:"client_id"`
	Host       string             `json:"host"`
	Partitions map[string][]int32 `json:"partitions"`
}

// PartitionLag is a group's position in one partition.
type PartitionLag struct {
	Topic     string `json:"topic"`
	Partition int32  `json:"partition"`
	Commit    int64  `json:"commit"`
	End       int64  `json:"end"`
	Lag       int64  `json:"lag"`
	Member    string `json:"member,omitempty"`
}

// sample reads end offsets and lag every Interval until ctx is done.
func (c *Console) sample(ctx context.Context, adm *kadm.Client) {
	t := time.NewTicker(c.cfg.Interval)
	defer t.Stop()
	for {
		rctx, cancel := context.WithTimeout(ctx, max(2*c.cfg.Interval, 5*time.Second))
		ends, err := adm.ListEndOffsets(rctx, c.topics...)
		if err == nil {
			err = ends.Error()
		}
		if ctx.Err() != nil {
			cancel()
			return
		}
		c.problem("offsets", err)
		c.observeOffsets(c.cfg.Now(), ends)
		lags, err := adm.Lag(rctx, c.cfg.Groups...)
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.problem("groups", err)
		if err == nil {
			c.observeGroups(lags)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// observeOffsets takes one reading of end offsets and derives each
// partition's throughput (records/s) from the previous one.
func (c *Console) observeOffsets(now time.Time, ends kadm.ListedOffsets) {
	c.mu.Lock()
	defer c.mu.Unlock()
	dt := now.Sub(c.sampledAt).Seconds()
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil || o.Offset < 0 {
			return
		}
		if c.offsets[o.Topic] == nil {
			c.offsets[o.Topic], c.rates[o.Topic] = map[int32]int64{}, map[int32]float64{}
		}
		prev, had := c.offsets[o.Topic][o.Partition]
		if had && !c.sampledAt.IsZero() && dt > 0 {
			c.rates[o.Topic][o.Partition] = max(0, float64(o.Offset-prev)/dt)
		}
		c.offsets[o.Topic][o.Partition] = o.Offset
	})
	c.sampledAt = now
}

// observeGroups takes one reading of the groups' members and lag.
func (c *Console) observeGroups(lags kadm.DescribedGroupLags) {
	var out []Group
	for _, name := range c.cfg.Groups {
		l, ok := lags[name]
		g := Group{Name: name, Lag: -1, Members: []Member{}, Partitions: []PartitionLag{}}
		switch err := l.Error(); {
		case !ok:
			g.Error = "not described"
		case errors.Is(err, kerr.GroupIDNotFound):
			g.State = "Dead" // no member has joined yet
		case err != nil:
			g.Error = err.Error()
		default:
			g.State, g.Protocol, g.Lag = l.State, l.Protocol, 0
			for _, m := range l.Members {
				mem := Member{MemberID: m.MemberID, ClientID: m.ClientID, Host: m.ClientHost, Partitions: map[string][]int32{}}
				if m.InstanceID != nil {
					mem.InstanceID = *m.InstanceID
				}
				if a, ok := m.Assigned.AsConsumer(); ok {
					for _, t := range a.Topics {
						mem.Partitions[t.Topic] = slices.Sorted(slices.Values(t.Partitions))
					}
				}
				g.Members = append(g.Members, mem)
			}
			for topic, parts := range l.Lag {
				for p, pl := range parts {
					x := PartitionLag{Topic: topic, Partition: p, Commit: pl.Commit.At, End: pl.End.Offset, Lag: pl.Lag}
					if pl.Member != nil {
						x.Member = pl.Member.MemberID
					}
					if pl.Lag > 0 {
						g.Lag += pl.Lag
					}
					g.Partitions = append(g.Partitions, x)
				}
			}
			slices.SortFunc(g.Partitions, func(a, b PartitionLag) int {
				if a.Topic != b.Topic {
					return strings.Compare(a.Topic, b.Topic)
				}
				return int(a.Partition - b.Partition)
			})
		}
		out = append(out, g)
	}
	c.mu.Lock()
	c.groups = out
	c.mu.Unlock()
}
