package egress

import (
	"bytes"
	"testing"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// FuzzChunkAnswerJSON holds appendChunkAnswer to protojson: for any chunk,
// the same bytes as appendJSON of its answer in every view, and a refusal
// exactly where protojson refuses (a string that is not valid UTF-8).
func FuzzChunkAnswerJSON(f *testing.F) {
	f.Add("req-1", "conv-1", int32(1), "loadtest_id", "42", int32(0), "Hello")
	f.Add("", "", int32(0), "", "", int32(-3), "")
	f.Add("r\"q\\", "c\n\t\r\b\f", int32(-7), "k\x00\x1f\x7f", "é😀\u2028", int32(1<<30), "a\x01b</script>&")
	f.Add("r", "c", int32(2), "k", "v", int32(5), "bad \xff utf-8")
	f.Add("r", "c", int32(2), "\xc3", "v", int32(5), "ok")
	f.Add("r", "c", int32(2), "k", "v", int32(5), "\ufffd replacement")
	f.Fuzz(func(t *testing.T, req, conv string, attempt int32, key, value string, index int32, delta string) {
		res := &pb.Result{RequestId: req, ConversationId: conv, Attempt: attempt,
			Body: &pb.Result_Chunk{Chunk: &pb.Chunk{Index: index, Delta: delta}}}
		if key != "" || value != "" {
			res.Metadata = map[string]string{key: value, key + "2": value + delta}
		}
		prefix := []byte("x")
		fast, ok := appendChunkAnswer(prefix, res)
		for _, v := range []view{{}, {backend: true}, {timings: true}, {backend: true, timings: true}} {
			var want bytes.Buffer
			err := appendJSON(&want, answerOf(res, v))
			if (err == nil) != ok {
				t.Fatalf("%v: protojson error %v, fast path ok %v", v, err, ok)
			}
			if ok && !bytes.Equal(fast[1:], want.Bytes()) {
				t.Fatalf("%v:\nprotojson %s\nfast      %s", v, want.Bytes(), fast[1:])
			}
		}
		if !ok && !bytes.Equal(fast, prefix) {
			t.Fatalf("refused, but the buffer changed: %q", fast)
		}
	})
	// Not a chunk: not this path's.
	if _, ok := appendChunkAnswer(nil, &pb.Result{Body: &pb.Result_Final{Final: &pb.Final{}}}); ok {
		f.Fatal("a final result took the chunk path")
	}
}
