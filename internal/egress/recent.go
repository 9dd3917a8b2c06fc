package egress

import (
	"sort"
	"time"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// recentOverhead is what one indexed result costs besides its key and
// value: the entry, the decoded message's structs, the slots in the
// partition's and the conversation's slices. Measured by
// BenchmarkRecentOpen (heap per accounted byte); an estimate, not exact.
const recentOverhead = 512

// recent is the in-memory index of recent results that lets a new stream
// replay without Kafka. The hub's live reader feeds it every record of
// every results partition (add); it keeps, per partition, the results in
// offset order and, per conversation, its results in offset order (the
// same entries), for at most window and maxBytes (estimated: key, twice
// the value for the decoded result and its JSON, recentOverhead).
// Eviction drops a partition's oldest entry first, so each partition holds
// one contiguous offset range [low, next): every decodable result at those
// offsets is in the index. A replay [from, next) of a conversation is served
// from memory when low <= from; otherwise it must read Kafka.
//
// recent has no lock of its own: the hub's mutex guards it, so that the
// index and the hub's live position move together (see hub.subscribe).
type recent struct {
	maxBytes int64
	window   time.Duration
	metrics  *metrics
	bytes    int64 // estimated, see recentOverhead
	records  int
	parts    map[int32]*recentPartition
}

// recentPartition is one partition's part of the index.
type recentPartition struct {
	// low is the first offset the index covers: every decodable result at
	// offsets [low, next) is in recs.
	low  int64
	next int64
	// floor bounds the timestamps before low: every record below low has
	// a timestamp before floor. It is where the live reader began (see
	// Egress.position) until an eviction raises it to the evicted entry's
	// maxTS.
	floor time.Time
	recs  []*recentEntry            // offset order, oldest first
	convs map[string][]*recentEntry // the same entries, per conversation
}

// recentEntry is one indexed result.
type recentEntry struct {
	conv   string
	offset int64 // where it became visible; held: see cursor
	held   int64
	// maxTS is the greatest record timestamp of the partition up to this
	// entry: monotonic, so a time finds its offset by binary search (as
	// Kafka's time index does).
	maxTS time.Time
	at    int64 // the record's own timestamp, Unix milliseconds (cursor.at)
	res   *pb.Result
	json  *lazyJSON // shared with the live events and every replay
	size  int64
}

func newRecent(maxBytes int64, window time.Duration, m *metrics) *recent {
	return &recent{maxBytes: maxBytes, window: window, metrics: m, parts: map[int32]*recentPartition{}}
}

// start begins coverage of each partition at the live reader's start
// offset; every record before it is older than floor.
func (r *recent) start(next map[int32]int64, floor time.Time) {
	for p, o := range next {
		r.reset(p, o, floor)
	}
}

// reset empties partition p and begins its coverage at offset o.
func (r *recent) reset(p int32, o int64, floor time.Time) {
	if old := r.parts[p]; old != nil {
		for _, e := range old.recs {
			r.bytes -= e.size
			r.records--
		}
	}
	r.parts[p] = &recentPartition{low: o, next: o, floor: floor, convs: map[string][]*recentEntry{}}
}

// add indexes the record at offset of partition p: res and json are its
// decoded result, nil for a control record, a record held in an open
// transaction, or an undecodable one (the offset is covered, nothing is
// kept). valueLen is the record value's length, ts its timestamp.
func (r *recent) add(p int32, offset int64, key []byte, valueLen int, ts time.Time, res *pb.Result, json *lazyJSON, now time.Time) {
	r.addAt(p, offset, 0, false, key, valueLen, ts, res, json, now)
}

// addAt is add for a result visible at offset: a transactional result
// let through by its commit marker there has held 1 + its own offset (see
// cursor), and again is set for the marker's second and later results.
func (r *recent) addAt(p int32, offset, held int64, again bool, key []byte, valueLen int, ts time.Time, res *pb.Result, json *lazyJSON, now time.Time) {
	part := r.parts[p]
	if part == nil || (offset < part.next && (!again || offset != part.next-1)) {
		// A partition the reader was not positioned on, or a reader
		// that went back: begin anew here.
		r.reset(p, offset, now)
		part = r.parts[p]
	}
	part.next = offset + 1
	if res != nil {
		e := &recentEntry{offset: offset, held: held, maxTS: ts, at: ts.UnixMilli(), res: res, json: json}
		if n := len(part.recs); n > 0 && part.recs[n-1].maxTS.After(ts) {
			e.maxTS = part.recs[n-1].maxTS
		}
		cs := part.convs[string(key)]
		if len(cs) > 0 {
			e.conv = cs[0].conv // one copy of the key per conversation
		} else {
			e.conv = string(key)
		}
		e.size = int64(len(key)) + 2*int64(valueLen) + recentOverhead
		part.recs = append(part.recs, e)
		part.convs[e.conv] = append(cs, e)
		r.bytes += e.size
		r.records++
	}
	r.evict(part, now)
	r.metrics.recentBytes.Set(float64(r.bytes))
	r.metrics.recentRecords.Set(float64(r.records))
}

// evict drops part's entries older than the window, then the oldest
// entries of any partition while the index is over its byte bound.
func (r *recent) evict(part *recentPartition, now time.Time) {
	cutoff := now.Add(-r.window)
	for len(part.recs) > 0 && part.recs[0].maxTS.Before(cutoff) {
		r.dropOldest(part)
	}
	for r.bytes > r.maxBytes {
		var oldest *recentPartition
		for _, q := range r.parts {
			if len(q.recs) > 0 && (oldest == nil || q.recs[0].maxTS.Before(oldest.recs[0].maxTS)) {
				oldest = q
			}
		}
		if oldest == nil {
			return
		}
		r.dropOldest(oldest)
	}
}

// dropOldest evicts part's first entry; coverage then begins after it.
func (r *recent) dropOldest(part *recentPartition) {
	e := part.recs[0]
	part.recs[0] = nil
	part.recs = part.recs[1:]
	part.low = e.offset + 1
	if e.maxTS.After(part.floor) {
		part.floor = e.maxTS
	}
	cs := part.convs[e.conv]
	cs[0] = nil // it is e: both slices are in offset order
	if cs = cs[1:]; len(cs) == 0 {
		delete(part.convs, e.conv)
	} else {
		part.convs[e.conv] = cs
	}
	r.bytes -= e.size
	r.records--
}

// windowStart returns the first offset of partition p whose timestamp is
// at or after t (the live position if none), as Kafka would answer, when
// the index knows: every record it does not hold is older than t.
func (r *recent) windowStart(p int32, t time.Time) (int64, bool) {
	part := r.parts[p]
	if part == nil || !part.floor.Before(t) {
		return 0, false
	}
	i := sort.Search(len(part.recs), func(i int) bool { return !part.recs[i].maxTS.Before(t) })
	if i == len(part.recs) {
		return part.next, true
	}
	return part.recs[i].offset, true
}

// replay returns conv's indexed results of partition p from offset from
// up to the live position, when the index covers from (false: ask Kafka).
// The events are copies: eviction does not touch them.
func (r *recent) replay(conv string, p int32, from int64) ([]event, bool) {
	part := r.parts[p]
	if part == nil || from < part.low {
		return nil, false
	}
	cs := part.convs[conv]
	i := sort.Search(len(cs), func(i int) bool { return cs[i].offset >= from })
	if i == len(cs) {
		return nil, true
	}
	out := make([]event, len(cs)-i)
	for j, e := range cs[i:] {
		out[j] = event{partition: p, offset: e.offset, held: e.held, at: e.at, res: e.res, json: e.json}
	}
	return out, true
}
