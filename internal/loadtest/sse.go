package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// sseReader holds one egress event stream per watched conversation
// (GET /v1/conversations/{id}/events). A stream that breaks (egress
// restarted, an end event) is reopened with Last-Event-ID set to the last
// event's cursor, so nothing is skipped and egress replays from Kafka.
type sseReader struct {
	base    string
	key     string // bearer token; empty sends none
	client  *http.Client
	ctx     context.Context
	cancel  context.CancelFunc
	deliver func(Answer)
	wg      sync.WaitGroup

	mu         sync.Mutex
	reconnects int
}

func newSSEReader(egressURL, apiKey string) *sseReader {
	return &sseReader{base: strings.TrimRight(egressURL, "/"), key: apiKey, client: &http.Client{Transport: newTransport()}}
}

func (r *sseReader) Name() string { return "sse" }

func (r *sseReader) Open(ctx context.Context, deliver func(Answer)) error {
	r.ctx, r.cancel = context.WithCancel(ctx)
	r.deliver = deliver
	return nil
}

var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

// Watch opens the conversation's stream and returns once egress has sent
// the response headers; the stream then lives until Close.
func (r *sseReader) Watch(ctx context.Context, conv string) error {
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
func (r *sseReader) follow(conv string, connected chan<- error) {
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
			connected <- fmt.Errorf("sse %s: %w", conv, err)
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

// stream reads one connection of conv's stream.
func (r *sseReader) stream(conv string, cursor *string, connected func()) error {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.base+"/v1/conversations/"+url.PathEscape(conv)+"/events", nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if r.key != "" {
		req.Header.Set("Authorization", "Bearer "+r.key)
	}
	if *cursor != "" {
		req.Header.Set("Last-Event-ID", *cursor)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("egress: %s", resp.Status)
	}
	connected()
	return parseSSE(resp.Body, func(id, name, data string) {
		if id != "" {
			*cursor = id
		}
		if a, ok := decodeEvent(name, data, time.Now()); ok {
			r.deliver(a)
		}
	})
}

// decodeEvent turns an egress event into an Answer: chunk, result and
// error events carry a Result as JSON; other events (end) and results
// without the loadtest metadata are not answers.
func decodeEvent(name, data string, at time.Time) (Answer, bool) {
	switch name {
	case "chunk", "result", "error":
	default:
		return Answer{}, false
	}
	var res pb.Result
	if jsonIn.Unmarshal([]byte(data), &res) != nil {
		return Answer{}, false
	}
	return answerOf(&res, at)
}

// parseSSE calls fn for every event of a text/event-stream.
func parseSSE(body io.Reader, fn func(id, name, data string)) error {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 8<<20)
	var id, name string
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if len(data) > 0 || name != "" {
				fn(id, name, strings.Join(data, "\n"))
			}
			id, name, data = "", "", nil
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				id = value
			case "event":
				name = value
			case "data":
				data = append(data, value)
			}
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	return fmt.Errorf("stream ended")
}

// Reconnects returns how many times streams were reopened.
func (r *sseReader) Reconnects() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reconnects
}

func (r *sseReader) Close() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
	r.client.CloseIdleConnections()
}
