package egress

import (
	"context"
	"encoding/binary"
	"hash/fnv"
	"time"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Resuming in another region (docs/MULTI-REGION.md).
//
// MirrorMaker 2 copies the results topic to a standby cluster with each
// record's partition, key and timestamp, but not its offset: the copy is
// produced anew, without the source's transaction markers, from wherever
// mirroring began. A cursor's offset therefore means nothing on the other
// cluster. A located cursor (cursor.located) names its cluster (origin),
// its event's record timestamp (at) and the event (ident). An egress
// handed a cursor of another cluster replays the conversation from a
// little before that timestamp, counting nothing as sent, until it meets
// the client's event (by ident): what follows it is new to the client. If
// the event never reached this cluster (it was still unmirrored when the
// first cluster died), the first event recorded after the cursor's
// timestamp is the first new one. Either way dedupe learns, as on any
// resume, the runs and attempts the client has seen.
//
// A conversation's results are written by one router-worker at a time,
// with that worker's clock: within a conversation record timestamps rise
// with offsets, unless a clock steps back across a rebalance;
// foreignMargin widens the search for that.

// foreignMargin is how far before a foreign cursor's timestamp the search
// for its event starts.
const foreignMargin = 5 * time.Second

// originTag names a Kafka cluster in cursors: 8 bytes of its cluster ID's
// FNV-1a hash; 0 when the ID is unknown (such cursors resume by offset).
func originTag(clusterID string) uint64 {
	if clusterID == "" {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(clusterID))
	if t := h.Sum64(); t != 0 {
		return t
	}
	return 1
}

// eventIdent identifies a result among its conversation's: the request, run,
// attempt, kind and chunk index (FNV-1a); never 0.
func eventIdent(res *pb.Result) uint64 {
	h := fnv.New64a()
	h.Write([]byte(res.GetRequestId()))
	h.Write([]byte{0})
	h.Write([]byte(res.GetRunId()))
	var b [9]byte
	binary.BigEndian.PutUint32(b[:4], uint32(res.GetAttempt()))
	switch {
	case res.GetFinal() != nil:
		b[4] = 'f'
	case res.GetError() != nil:
		b[4] = 'e'
	default:
		b[4] = 'c'
		binary.BigEndian.PutUint32(b[5:], uint32(res.GetChunk().GetIndex()))
	}
	h.Write(b[:])
	if t := h.Sum64(); t != 0 {
		return t
	}
	return 1
}

// foreign reports whether c's offset belongs to another cluster than
// this egress's.
func (e *Egress) foreign(c cursor) bool {
	return c.origin != 0 && e.origin != 0 && c.origin != e.origin
}

// foreignStart is where the replay for a foreign cursor c starts: a
// little before c's timestamp, or the replay window's start when that is
// earlier (dedupe's memory).
func (e *Egress) foreignStart(ctx context.Context, partition int32, c cursor, since time.Time) (int64, error) {
	from := time.UnixMilli(c.at).Add(-foreignMargin)
	if since.Before(from) {
		from = since
	}
	return e.offsetAt(ctx, partition, from)
}

// placeForeign finds the client's place while a foreign cursor is pending:
// it reports whether ev is one the client has (the cursor's event or one
// before it). At the cursor's event, or at the first event recorded after
// its timestamp, the stream starts (at the next offset, or at ev).
func (s *session) placeForeign(ev event) (had bool) {
	c := *s.awaiting
	switch {
	case eventIdent(ev.res) == c.ident && ev.held > 0:
		// One of several results a commit marker let through here:
		// those after it at the same offset are new to the client.
		s.start, s.startHeld = ev.offset, ev.held
	case eventIdent(ev.res) == c.ident:
		s.start = ev.offset + 1
	case ev.at <= c.at:
		return true
	default:
		s.start = ev.offset
		s.e.metrics.foreignUnmatched.Inc()
	}
	s.awaiting = nil
	s.e.metrics.foreignResumes.Inc()
	return s.had(ev)
}
