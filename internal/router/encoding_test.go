package router

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/topicspec"
)

// TestResultsAsJSON: with ResultsEncoding "json" every result record (chunks
// and the terminal one) is protojson with content-type application/json,
// readable without the schema, and decodes to the same answer.
func TestResultsAsJSON(t *testing.T) {
	h := newHarness(t)
	h.run(h.modelsim(time.Millisecond), func(c *Config) { c.ResultsEncoding = "json" })
	h.produce(request("cj", 0, true), request("cj", 1, false))
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	terminals, chunks := 0, 0
	for terminals < 2 {
		fetches := h.client.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatalf("got %d of 2 terminal results before the time limit", terminals)
		}
		fetches.EachRecord(func(rec *kgo.Record) {
			if rec.Topic != results {
				t.Errorf("record on %s: %s", rec.Topic, rec.Value)
				return
			}
			if ct := envelope.Header(rec, envelope.HeaderContentType); ct != envelope.ContentTypeJSON {
				t.Errorf("content-type = %q, want %q", ct, envelope.ContentTypeJSON)
			}
			var m map[string]any
			if err := json.Unmarshal(rec.Value, &m); err != nil || m["request_id"] == nil || m["conversation_id"] != "cj" {
				t.Errorf("value %s: not JSON with request_id and conversation_id (%v)", rec.Value, err)
			}
			res, err := envelope.DecodeResult(rec)
			if err != nil {
				t.Fatalf("decode %s: %v", rec.Value, err)
			}
			switch {
			case res.GetChunk() != nil:
				chunks++
			case res.GetFinal() != nil:
				terminals++
				if !strings.Contains(string(rec.Value), `"final"`) || res.GetFinal().GetContent() == "" {
					t.Errorf("final record %s", rec.Value)
				}
			default:
				t.Fatalf("unexpected result %v", res)
			}
		})
	}
	if chunks == 0 {
		t.Error("the streamed request wrote no chunk records")
	}
}

func TestResultsEncodingIsValidated(t *testing.T) {
	spec, err := topicspec.Load("")
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{Topics: spec, Routing: Routing{Backends: []Backend{{Name: "sim", BaseURL: "http://127.0.0.1:1/v1", Models: []string{"sim"}}}},
		ResultsEncoding: "xml"}
	cfg.setDefaults()
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), `"xml"`) {
		t.Errorf("Validate() = %v, want an error naming the encoding", err)
	}
}

// TestRepeatAnsweredFromJSONResults: a repeat is answered with a copy of
// its original's terminal result read back from JSON results (reanswer.go
// decodes by the header), without a second model call.
func TestRepeatAnsweredFromJSONResults(t *testing.T) {
	h := newHarness(t)
	h.run(h.modelsim(time.Millisecond), func(c *Config) { c.ResultsEncoding = "json" })
	h.produce(request("idem-j", 0, false), request("idem-j", 0, false))
	res, _ := h.collect(2)
	ts := terminals(res)
	if len(ts) != 2 || ts[0].GetRequestId() != "idem-j-0" || ts[1].GetRequestId() != "idem-j-0" {
		t.Fatalf("terminal results %v, want idem-j-0 twice", ts)
	}
	sameAnswer(t, ts[0], ts[1])
	if got := h.hits.Load(); got != 1 {
		t.Errorf("backend called %d times, want 1 (the repeat answered with a copy)", got)
	}
}
