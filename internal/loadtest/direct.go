package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// directCaller sends requests of the run's shape straight to the model
// simulator's chat-completions endpoint, bypassing Switchboard: the same
// machine at the same moment gives the reference that pipeline overhead is
// taken against.
type directCaller struct {
	url    string
	client *http.Client
}

func newDirectCaller(modelURL string) *directCaller {
	return &directCaller{url: strings.TrimRight(modelURL, "/") + "/v1/chat/completions",
		client: &http.Client{Transport: newTransport(), Timeout: 60 * time.Second}}
}

// call sends one request and returns when the answer is complete, and the
// time to the first content delta for a stream.
func (d *directCaller) call(ctx context.Context, m Message) (ttfc time.Time, err error) {
	body, _ := json.Marshal(map[string]any{"model": m.Model, "stream": m.Stream, "max_tokens": m.MaxTokens,
		"messages": []map[string]string{{"role": roleUser, "content": m.Content}}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, bytes.NewReader(body))
	if err != nil {
		return time.Time{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return time.Time{}, &SendError{Code: transportCode(err), Err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return time.Time{}, &SendError{Code: fmt.Sprintf("model_http_%d", resp.StatusCode), Status: resp.StatusCode, Err: fmt.Errorf("%s", b)}
	}
	if !m.Stream {
		_, err := io.Copy(io.Discard, resp.Body)
		return time.Time{}, err
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			return ttfc, nil
		}
		if ttfc.IsZero() && strings.Contains(data, `"content":"`) && !strings.Contains(data, `"content":""`) {
			ttfc = time.Now()
		}
	}
	if err := sc.Err(); err != nil {
		return ttfc, &SendError{Code: "model_stream", Err: err}
	}
	return ttfc, &SendError{Code: "model_stream", Err: fmt.Errorf("stream ended without [DONE]")}
}
