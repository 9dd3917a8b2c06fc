package router

import (
	"context"
	"math"
	"sync"
	"time"
)

// tokenBucket limits model tokens per minute. It refills evenly at
// perMinute/60 tokens a second and holds at most one minute's worth.
//
// golang.org/x/time/rate (used for request counts) cannot return tokens,
// and reconciling an estimate with the usage a backend reports needs both
// directions: give returns what was over-estimated, or takes more (the
// bucket may go negative, delaying later takes) when the answer was larger.
type tokenBucket struct {
	mu       sync.Mutex
	rate     float64 // tokens a second
	capacity float64
	tokens   float64
	last     time.Time
}

// newTokenBucket returns a full bucket of perMinute tokens, or nil (no
// limit) when perMinute is zero.
func newTokenBucket(perMinute int) *tokenBucket {
	if perMinute <= 0 {
		return nil
	}
	return &tokenBucket{rate: float64(perMinute) / 60, capacity: float64(perMinute), tokens: float64(perMinute), last: time.Now()}
}

func (b *tokenBucket) refill(now time.Time) {
	if now.After(b.last) {
		b.tokens = math.Min(b.capacity, b.tokens+now.Sub(b.last).Seconds()*b.rate)
		b.last = now
	}
}

// take takes n tokens if they are there and returns zero; otherwise it
// takes nothing and returns how long until they will be. A request larger
// than the bucket waits for a full bucket and takes it whole.
func (b *tokenBucket) take(now time.Time, n int) time.Duration {
	if b == nil {
		return 0
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(now)
	need := math.Min(float64(n), b.capacity)
	if b.tokens >= need {
		b.tokens -= need
		return 0
	}
	return time.Duration(math.Ceil((need - b.tokens) / b.rate * float64(time.Second)))
}

// wait takes n tokens, waiting for them as long as ctx allows.
func (b *tokenBucket) wait(ctx context.Context, n int) error {
	for {
		d := b.take(time.Now(), n)
		if d == 0 {
			return nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return context.Cause(ctx)
		case <-t.C:
		}
	}
}

// give adds n tokens (negative n takes them, possibly below zero), up to
// the capacity.
func (b *tokenBucket) give(n int) {
	if b == nil || n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(time.Now())
	b.tokens = math.Min(b.capacity, b.tokens+float64(n))
}

// setLimit changes the rate, keeping the tokens there are (up to the new
// capacity).
func (b *tokenBucket) setLimit(perMinute int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.refill(time.Now())
	b.rate, b.capacity = float64(perMinute)/60, float64(perMinute)
	b.tokens = math.Min(b.tokens, b.capacity)
}
