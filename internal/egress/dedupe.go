package egress

import (
	"slices"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// maxTracked bounds the requests one stream remembers; the oldest are
// forgotten first. A stream follows one conversation, whose requests are
// answered one after another: only its last few can be processed again
// (a rerun after a crash, a repeat answered from the first answer), so
// 256 is far more than any rerun reaches back, and a stream held open for
// hours holds at most 256 entries (about 60 KB), not one per request it
// ever saw (the soak of docs/BENCHMARKS.md grew egress by 450 MB over an
// hour with 4,096).
const maxTracked = 256

// maxOldRuns bounds the superseded runs remembered per request.
const maxOldRuns = 8

// Reasons a result is not forwarded (label values of
// switchboard_egress_duplicates_dropped_total).
const (
	dropRepeatedChunk     = "repeated_chunk"
	dropSupersededAttempt = "superseded_attempt"
	dropSupersededRun     = "superseded_run"
	dropRepeatedTerminal  = "repeated_terminal"
)

// dedupe decides, for one stream (or one webhook partition), whether a
// result is new. A request's results form runs (one per processing by
// router-worker, told apart by run_id) and, within a run, attempts (one per
// backend try). dedupe sends the latest run's latest attempt: it drops
// results of a run once another run of the request has appeared, chunks of
// an attempt once a later attempt of the run has begun, chunks at or below
// an index already sent, and everything after the request's terminal
// result. A new run or attempt restarts the answer at chunk 0; admit says
// so (restart) when the stream has already seen results of the request,
// and the stream tells its client with a restart event.
type dedupe struct {
	reqs  map[string]*reqState
	order []string // request IDs, oldest first
}

type reqState struct {
	run     string
	oldRuns []string // runs superseded by run, most recent last
	attempt int32
	next    int32 // next chunk index expected in attempt
	done    bool
	seen    bool // a result of the request was admitted
}

func newDedupe() *dedupe { return &dedupe{reqs: map[string]*reqState{}} }

// admit reports whether res should be sent and, if not, why; restart is
// true when res starts the request's answer over (a new run or attempt)
// after results of it were admitted.
func (d *dedupe) admit(res *pb.Result) (ok bool, reason string, restart bool) {
	id := res.GetRequestId()
	st := d.reqs[id]
	if st == nil {
		st = &reqState{run: res.GetRunId(), attempt: res.GetAttempt()}
		d.reqs[id] = st
		d.order = append(d.order, id)
		if len(d.order) > maxTracked {
			delete(d.reqs, d.order[0])
			d.order = d.order[1:]
		}
	}
	if st.done {
		return false, dropRepeatedTerminal, false
	}
	if run := res.GetRunId(); run != st.run {
		if slices.Contains(st.oldRuns, run) {
			return false, dropSupersededRun, false
		}
		restart = st.seen
		// A new processing of the request: it starts over.
		st.oldRuns = append(st.oldRuns, st.run)
		if len(st.oldRuns) > maxOldRuns {
			st.oldRuns = st.oldRuns[1:]
		}
		st.run, st.attempt, st.next = run, res.GetAttempt(), 0
	}
	if res.GetAttempt() < st.attempt {
		return false, dropSupersededAttempt, false
	}
	if res.GetAttempt() > st.attempt {
		st.attempt, st.next = res.GetAttempt(), 0
		restart = restart || st.seen
	}
	if c := res.GetChunk(); c != nil {
		if c.GetIndex() < st.next {
			return false, dropRepeatedChunk, false
		}
		st.next = c.GetIndex() + 1
		st.seen = true
		return true, "", restart
	}
	st.done = true
	st.seen = true
	return true, "", restart
}
