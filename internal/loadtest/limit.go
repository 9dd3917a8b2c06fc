package loadtest

import "time"

// The ordered limit.
//
// Switchboard keeps a conversation's order: at most one of its requests is
// with a model at a time, and a request's model call starts only after the
// call of the request sent before it has ended. So even a pipeline that
// cost nothing could not answer a request sooner than
//
//	earliest_done(i) = max(send(i), earliest_done(i-1)) + model(i)
//
// for the requests i = 1, 2, ... of one conversation in send order, with
// earliest_done(0) = -∞. send(i) is the request's intended send time (the
// one end-to-end latency counts from) and model(i) its model time as
// router-worker timed it (the final result's timings, dispatch to
// completion, retries included). The overhead over the ordered limit is
// then done(i) − earliest_done(i), done(i) being when the reader received
// the final result. It is never more than the per-request overhead
// (done(i) − send(i) − model(i)), since earliest_done(i) ≥ send(i) +
// model(i); the difference is the time a request had to wait for the
// earlier requests of its conversation in any order-keeping system, which
// is not the pipeline's cost. And it is not below zero: the worker starts
// request i no sooner than send(i) and the end of request i-1's call, so by
// induction its call ends no sooner than earliest_done(i).
//
// The limit is of the final answer, not the first chunk: the next request
// of a conversation waits for the whole model call whether or not it
// streamed, so the final's completion is what chains; a first-chunk limit
// would add the model's time to first token to the same chain start and is
// not reported.
//
// Requests that never reached the model are taken to cost no model time:
// a failed send (never stored) and a lost request (no answer) are skipped,
// and an error result (no timings) ends at max(send, earliest_done(i-1)).
// That keeps the limit a lower bound. A final result without timings
// (a tenant that may not see them) makes the rest of its conversation
// unknown, so no figure is reported for them.

// limitStep is one request of a conversation, in send order, as the
// ordered limit sees it.
type limitStep struct {
	send time.Time
	// skip marks a request that never reached the model (a failed send, or
	// no answer at all).
	skip bool
	// model is the model time; unknown marks a final result without it.
	model   time.Duration
	unknown bool
}

// orderedLimit returns earliest_done of each step of one conversation,
// given in send order; a zero time where the limit is not known (a
// skipped step, or a step after a final without its model time).
func orderedLimit(steps []limitStep) []time.Time {
	out := make([]time.Time, len(steps))
	var prev time.Time // earliest_done of the last step that reached the model
	for i, s := range steps {
		if s.skip {
			continue
		}
		if s.unknown {
			break
		}
		start := s.send
		if prev.After(start) {
			start = prev
		}
		prev = start.Add(s.model)
		out[i] = prev
	}
	return out
}
