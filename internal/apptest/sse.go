package apptest

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"strings"
)

// Event is one Server-Sent Event.
type Event struct {
	ID   string
	Name string
	Data string
}

// ReadSSE opens url as an event stream, calls connected once the response
// headers have arrived (nil is fine), then calls fn for every event until
// fn returns false, the stream ends or ctx is done. lastEventID, when not
// empty, is sent as Last-Event-ID. The request carries DevKey, the key of
// every stack's tenants file (egress then shows the dev tenant's results).
func ReadSSE(ctx context.Context, url, lastEventID string, connected func(), fn func(Event) bool) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Authorization", "Bearer "+DevKey)
	if lastEventID != "" {
		req.Header.Set("Last-Event-ID", lastEventID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", url, resp.Status)
	}
	if connected != nil {
		connected()
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var ev Event
	var data []string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if len(data) > 0 || ev.Name != "" {
				ev.Data = strings.Join(data, "\n")
				if !fn(ev) {
					return nil
				}
			}
			ev, data = Event{}, nil
		case strings.HasPrefix(line, ":"):
		default:
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.ID = value
			case "event":
				ev.Name = value
			case "data":
				data = append(data, value)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", url, err)
	}
	return sc.Err()
}
