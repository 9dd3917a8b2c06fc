package loadtest

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// follower is what the stream readers (sse, ws, grpc) share: a goroutine
// per watched conversation that reads its egress stream until Close, and
// reopens a stream that broke (egress restarted, an end message) from the
// last event's cursor, so nothing is skipped and egress replays from
// Kafka. A reader sets stream and embeds the follower for Open, Watch,
// Reconnects and Close.
type follower struct {
	// stream reads one connection of conv's stream, resuming after
	// *cursor (empty: egress's replay window) and setting it to each
	// event's cursor; it calls connected once the stream is live and
	// returns when the connection ends.
	stream func(conv string, cursor *string, connected func()) error

	ctx     context.Context
	cancel  context.CancelFunc
	deliver func(Answer)
	wg      sync.WaitGroup

	mu         sync.Mutex
	reconnects int
}

func (r *follower) Open(ctx context.Context, deliver func(Answer)) error {
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.deliver = deliver
	return nil
}

// Watch opens the conversation's stream and returns once it is live; the
// stream then lives until Close.
func (r *follower) Watch(ctx context.Context, conv string) error {
	connected := make(chan error, 1)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.follow(conv, connected)
	}()
	select {
	case err := <-connected:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// follow reads conv's stream until Close, reopening it from its cursor.
// The first connection's outcome goes to connected.
func (r *follower) follow(conv string, connected chan<- error) {
	cursor := ""
	first := true
	for attempt := 0; r.ctx.Err() == nil; attempt++ {
		err := r.stream(conv, &cursor, func() {
			if first {
				first = false
				connected <- nil
			}
			attempt = 0
		})
		if r.ctx.Err() != nil {
			break
		}
		if first && attempt >= 50 {
			connected <- fmt.Errorf("%s: %w", conv, err)
			return
		}
		r.mu.Lock()
		r.reconnects++
		r.mu.Unlock()
		select {
		case <-r.ctx.Done():
		case <-time.After(min(2*time.Second, time.Duration(attempt+1)*100*time.Millisecond)):
		}
	}
	if first {
		connected <- r.ctx.Err()
	}
}

// Reconnects returns how many times streams were reopened.
func (r *follower) Reconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reconnects
}

// Close stops every stream and waits for their goroutines.
func (r *follower) Close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
}
