package modelsim

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"
)

// Faults makes a server misbehave the way real backends do, for tests of
// retries, circuit breakers and timeouts. Each request draws one uniform
// number that picks at most one of: an error status (ErrorRates, in
// ascending status order), a hang, or a connection reset; the rest are
// answered normally. SlowFirstTokenFraction is drawn separately. The zero
// value injects nothing.
type Faults struct {
	// ErrorRates maps an HTTP status (400-599) to the fraction of requests
	// answered with it, as an OpenAI error body.
	ErrorRates map[int]float64
	// RetryAfter, when set, is sent with 429 and 503 answers as
	// Retry-After (whole seconds, rounded up) and retry-after-ms.
	RetryAfter time.Duration
	// HangFraction of requests never answer: the handler waits until the
	// client goes away.
	HangFraction float64
	// ResetFraction of requests lose their connection: a JSON request is
	// reset (TCP RST) before any answer, a stream is cut after half of
	// its tokens.
	ResetFraction float64
	// SlowFirstTokenFraction of requests wait SlowFirstToken more before
	// their first token (for a JSON answer, before the answer).
	SlowFirstTokenFraction float64
	SlowFirstToken         time.Duration
}

// Validate reports whether f is usable.
func (f Faults) Validate() error {
	var errs []error
	sum := f.HangFraction + f.ResetFraction
	for status, rate := range f.ErrorRates {
		if status < 400 || status > 599 {
			errs = append(errs, fmt.Errorf("error rate for status %d: status must be 400-599", status))
		}
		if !(rate >= 0 && rate <= 1) {
			errs = append(errs, fmt.Errorf("error rate for status %d: %v must be in [0, 1]", status, rate))
		}
		sum += rate
	}
	for name, v := range map[string]float64{"hang fraction": f.HangFraction, "reset fraction": f.ResetFraction, "slow first token fraction": f.SlowFirstTokenFraction} {
		if !(v >= 0 && v <= 1) {
			errs = append(errs, fmt.Errorf("%s %v: must be in [0, 1]", name, v))
		}
	}
	if sum > 1+1e-9 {
		errs = append(errs, fmt.Errorf("error rates, hang and reset fractions add up to %v: must be at most 1", sum))
	}
	if f.RetryAfter < 0 || f.SlowFirstToken < 0 {
		errs = append(errs, errors.New("retry after and slow first token must not be negative"))
	}
	return errors.Join(errs...)
}

// fault is what one request suffers.
type fault struct {
	status int           // error answer, 0 for none
	hang   bool          // never answer
	reset  bool          // lose the connection
	slow   time.Duration // extra wait before the first token
}

// draw picks the fault for two uniform numbers in [0, 1).
func (f *Faults) draw(u, v float64) fault {
	var out fault
	if v < f.SlowFirstTokenFraction {
		out.slow = f.SlowFirstToken
	}
	acc := 0.0
	for _, status := range slices.Sorted(maps.Keys(f.ErrorRates)) {
		if acc += f.ErrorRates[status]; u < acc {
			out.status = status
			return out
		}
	}
	if acc += f.HangFraction; u < acc {
		out.hang = true
		return out
	}
	if acc += f.ResetFraction; u < acc {
		out.reset = true
	}
	return out
}

// errorAnswer writes status as an OpenAI error, with Retry-After on 429
// and 503 when configured.
func (f *Faults) errorAnswer(w http.ResponseWriter, status int) {
	if f.RetryAfter > 0 && (status == http.StatusTooManyRequests || status == http.StatusServiceUnavailable) {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(f.RetryAfter.Seconds()))))
		w.Header().Set("Retry-After-Ms", strconv.FormatInt(f.RetryAfter.Milliseconds(), 10))
	}
	typ, code := "server_error", "injected_fault"
	if status == http.StatusTooManyRequests {
		typ, code = "rate_limit_error", "rate_limit_exceeded"
	}
	writeError(w, &apiError{Status: status, Type: typ, Code: code, Message: fmt.Sprintf("modelsim injected a %d answer", status)})
}

// resetConnection closes the request's connection with a TCP reset and no
// answer. If the connection cannot be taken over it aborts the handler,
// which also closes the connection.
func resetConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetLinger(0) // close sends RST instead of FIN
	}
	_ = conn.Close()
}
