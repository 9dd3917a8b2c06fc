package console

import (
	"maps"
	"slices"
	"time"

	"github.com/switchboard-llm/switchboard/internal/status"
)

// Snapshot is everything the page shows at one moment (GET
// /console/api/snapshot, and each event of /console/api/events).
type Snapshot struct {
	At time.Time `json:"at"`
	// Topics are the topics of topics.yaml with their partitions.
	Topics []Topic `json:"topics"`
	// Groups are the consumer groups shown, the router group first.
	Groups []Group `json:"groups"`
	// Instances are the latest status records, by key; Stale marks those
	// not refreshed within three of their intervals.
	Instances []Instance `json:"instances"`
	// DeadLetters are the latest dead letters, newest first;
	// DeadLettersSeen counts those read since the console started
	// (the tail read at start included).
	DeadLetters     []DeadLetter `json:"dead_letters"`
	DeadLettersSeen int64        `json:"dead_letters_seen"`
	// Series is the last two minutes of terminal results, a point a
	// second, oldest first.
	Series []Point `json:"series"`
	// Problems are the console's own reading errors, by source.
	Problems map[string]string `json:"problems"`
}

// Topic is one topic's partitions.
type Topic struct {
	Name       string      `json:"name"`
	Rate       float64     `json:"rate"` // records/s, all partitions
	Partitions []Partition `json:"partitions"`
}

// Partition is one partition's end offset, throughput and each group's
// lag there.
type Partition struct {
	Partition int32            `json:"partition"`
	End       int64            `json:"end"`
	Rate      float64          `json:"rate"`
	Lag       map[string]int64 `json:"lag,omitempty"`
}

// Instance is one status record with its freshness.
type Instance struct {
	*status.Record
	Stale bool `json:"stale"`
}

// Snapshot returns the page's data now.
func (c *Console) Snapshot() Snapshot {
	now := c.cfg.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Snapshot{At: now.UTC(), Groups: slices.Clone(c.groups), DeadLettersSeen: c.deadSeen,
		Series: c.series.points(now.Add(-time.Second)), Problems: maps.Clone(c.problems),
		Topics: []Topic{}, Instances: []Instance{}, DeadLetters: []DeadLetter{}}
	if s.Groups == nil {
		s.Groups = []Group{}
	}
	lag := map[string]map[int32]map[string]int64{} // topic -> partition -> group -> lag
	for _, g := range c.groups {
		for _, p := range g.Partitions {
			if lag[p.Topic] == nil {
				lag[p.Topic] = map[int32]map[string]int64{}
			}
			if lag[p.Topic][p.Partition] == nil {
				lag[p.Topic][p.Partition] = map[string]int64{}
			}
			lag[p.Topic][p.Partition][g.Name] = p.Lag
		}
	}
	for _, name := range c.topics {
		t := Topic{Name: name, Partitions: []Partition{}}
		for _, p := range slices.Sorted(maps.Keys(c.offsets[name])) {
			rate := c.rates[name][p]
			t.Rate += rate
			t.Partitions = append(t.Partitions, Partition{Partition: p, End: c.offsets[name][p], Rate: rate, Lag: lag[name][p]})
		}
		s.Topics = append(s.Topics, t)
	}
	for _, k := range slices.Sorted(maps.Keys(c.instances)) {
		r := c.instances[k]
		s.Instances = append(s.Instances, Instance{Record: r, Stale: r.Stale(now)})
	}
	for i := len(c.dead) - 1; i >= 0; i-- {
		s.DeadLetters = append(s.DeadLetters, c.dead[i])
	}
	return s
}
