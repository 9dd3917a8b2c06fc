package client_test

import (
	"errors"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/client"
)

// FuzzDecodeResult: any value under any of the content-types decodes to a
// result with a request ID and exactly one body, or fails with a
// *DecodeError; never a panic.
func FuzzDecodeResult(f *testing.F) {
	f.Add([]byte(`{"request_id":"r","conversation_id":"c","final":{"content":"hi","usage":{"total_tokens":3}}}`), "application/json")
	f.Add([]byte(`{"request_id":"r","chunk":{"index":1,"delta":"d"}}`), "application/json")
	f.Add([]byte(`{"request_id":"r","error":{"code":"x","retryable":true}}`), "application/json; charset=utf-8")
	f.Add([]byte{0x0a, 0x01, 'r', 0x2a, 0x02, 0x08, 0x01}, "")
	f.Add([]byte{0x0a, 0x01, 'r'}, "application/x-protobuf")
	f.Add([]byte(`{}`), "text/plain")
	f.Fuzz(func(t *testing.T, value []byte, contentType string) {
		rec := &kgo.Record{Topic: "switchboard.results", Key: []byte("c"), Value: value}
		if contentType != "" {
			rec.Headers = []kgo.RecordHeader{{Key: "content-type", Value: []byte(contentType)}}
		}
		res, err := client.DecodeResult(rec)
		if err != nil {
			var de *client.DecodeError
			if !errors.As(err, &de) || !errors.Is(err, client.ErrDecode) {
				t.Fatalf("error %v is not a *DecodeError", err)
			}
			return
		}
		bodies := 0
		for _, set := range []bool{res.Chunk != nil, res.Final != nil, res.Error != nil} {
			if set {
				bodies++
			}
		}
		if res.RequestID == "" || bodies != 1 {
			t.Fatalf("decoded %+v: want a request ID and one body", res)
		}
	})
}
