package egress

import (
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// maxTracked bounds the requests one stream remembers; the oldest are
// forgotten first. A request older than that is long finished.
const maxTracked = 4096

// dedupe decides, for one stream, whether a result is new: it drops chunks
// of an attempt once a later attempt has begun, chunks at or below an index
// already sent, and everything after a request's terminal result.
type dedupe struct {
	reqs  map[string]*reqState
	order []string // request IDs, oldest first
}

type reqState struct {
	attempt int32
	next    int32 // next chunk index expected in attempt
	done    bool
}

func newDedupe() *dedupe { return &dedupe{reqs: map[string]*reqState{}} }

// admit reports whether res should be sent and, if not, why.
func (d *dedupe) admit(res *pb.Result) (ok bool, reason string) {
	id := res.GetRequestId()
	st := d.reqs[id]
	if st == nil {
		st = &reqState{attempt: res.GetAttempt()}
		d.reqs[id] = st
		d.order = append(d.order, id)
		if len(d.order) > maxTracked {
			delete(d.reqs, d.order[0])
			d.order = d.order[1:]
		}
	}
	if st.done {
		return false, "repeated_terminal"
	}
	if res.GetAttempt() < st.attempt {
		return false, "superseded_attempt"
	}
	if res.GetAttempt() > st.attempt {
		st.attempt, st.next = res.GetAttempt(), 0
	}
	if c := res.GetChunk(); c != nil {
		if c.GetIndex() < st.next {
			return false, "repeated_chunk"
		}
		st.next = c.GetIndex() + 1
		return true, ""
	}
	st.done = true
	return true, ""
}
