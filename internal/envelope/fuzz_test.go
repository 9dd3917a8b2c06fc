package envelope

import (
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"
)

// FuzzDecodeRequest feeds arbitrary values in both encodings: decoding must
// return a request or an ErrDecode, never panic.
func FuzzDecodeRequest(f *testing.F) {
	good, _ := EncodeRequest("t", validRequest())
	f.Add(good.Value, false)
	f.Add([]byte(`{"lane":"batch","model":"sim","messages":[{"role":"user","content":"hi"}]}`), true)
	f.Add([]byte(`{"messages":[{"role":"user"}],"deadline":"x"}`), true)
	f.Fuzz(func(t *testing.T, value []byte, asJSON bool) {
		rec := &kgo.Record{Key: []byte("c1"), Value: value}
		if asJSON {
			rec.Headers = []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}}
		}
		req, err := DecodeRequest(rec)
		if err == nil {
			if verr := Validate(req); verr != nil {
				t.Fatalf("decoded request fails validation: %v", verr)
			}
		}
	})
}

// FuzzDecodeResult: arbitrary result values decode or fail cleanly.
func FuzzDecodeResult(f *testing.F) {
	f.Add([]byte{0x0a, 0x02, 'r', '1'}, false)
	f.Add([]byte(`{"request_id":"r","chunk":{"index":1,"delta":"d"}}`), true)
	f.Fuzz(func(t *testing.T, value []byte, asJSON bool) {
		rec := &kgo.Record{Key: []byte("c1"), Value: value}
		if asJSON {
			rec.Headers = []kgo.RecordHeader{{Key: HeaderContentType, Value: []byte(ContentTypeJSON)}}
		}
		if res, err := DecodeResult(rec); err == nil && res.GetRequestId() == "" {
			t.Fatal("decoded a result without request_id")
		}
	})
}
