package loadtest

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// sseReader holds one egress event stream per watched conversation
// (GET /v1/conversations/{id}/events). A stream that breaks (egress
// restarted, an end event) is reopened with Last-Event-ID set to the last
// event's cursor (see follower).
type sseReader struct {
	follower
	base   string
	key    string // bearer token; empty sends none
	client *http.Client
}

func newSSEReader(egressURL, apiKey string) *sseReader {
	r := &sseReader{base: strings.TrimRight(egressURL, "/"), key: apiKey, client: &http.Client{Transport: newTransport()}}
	r.follower.stream = r.stream
	return r
}

func (r *sseReader) Name() string { return "sse" }

var jsonIn = protojson.UnmarshalOptions{DiscardUnknown: true}

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

func (r *sseReader) Close() {
	r.follower.Close()
	r.client.CloseIdleConnections()
}
