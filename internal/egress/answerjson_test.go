package egress

import (
	"bytes"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// FuzzAnswerJSON holds appendAnswer to protojson: for any chunk, final or
// error result, the same bytes as appendJSON of its answer in every view,
// and a refusal exactly where protojson refuses (a string that is not
// valid UTF-8, a timestamp out of range).
func FuzzAnswerJSON(f *testing.F) {
	f.Add("req-1", "conv-1", int32(1), "loadtest_id", "42", uint8(0), int32(0), "Hello", int64(1733364000), int32(123456789), false)
	f.Add("", "", int32(0), "", "", uint8(1), int32(0), "", int64(0), int32(0), false)
	f.Add("r\"q\\", "c\n\t\r\b\f", int32(-7), "k\x00\x1f\x7f", "é😀\u2028", uint8(0), int32(1<<30), "a\x01b</script>&", int64(-1), int32(5), true)
	f.Add("r", "c", int32(2), "k", "v", uint8(0), int32(5), "bad \xff utf-8", int64(1), int32(1), true)
	f.Add("r", "c", int32(2), "\xc3", "v", uint8(1), int32(5), "ok", int64(1), int32(1000000), true)
	f.Add("r", "c", int32(2), "k", "v", uint8(1), int32(5), "\ufffd replacement", int64(253402300800), int32(0), true)
	f.Add("r", "c", int32(2), "k", "v", uint8(1), int32(5), "content", int64(1733364000), int32(1000000000), true)
	f.Add("r", "c", int32(2), "k", "v", uint8(1), int32(5), "content", int64(-62135596800), int32(120000000), true)
	f.Add("r", "c", int32(3), "k", "v", uint8(2), int32(5), "message", int64(0), int32(0), true)
	f.Fuzz(func(t *testing.T, req, conv string, attempt int32, key, value string, kind uint8, n int32, text string, secs int64, nanos int32, flag bool) {
		res := &pb.Result{RequestId: req, ConversationId: conv, Attempt: attempt, Tenant: "t", RunId: "run", WebhookUrl: "https://x"}
		if key != "" || value != "" {
			res.Metadata = map[string]string{key: value, key + "2": value + text}
		}
		switch kind % 4 {
		case 0:
			res.Body = &pb.Result_Chunk{Chunk: &pb.Chunk{Index: n, Delta: text}}
		case 1:
			at := &timestamppb.Timestamp{Seconds: secs, Nanos: nanos}
			later := &timestamppb.Timestamp{Seconds: secs + int64(n), Nanos: nanos / 1000 * 1000}
			fin := &pb.Final{Content: text, FinishReason: key, Backend: value}
			if flag {
				fin.Usage = &pb.Usage{PromptTokens: n, CompletionTokens: attempt, TotalTokens: n + attempt}
				fin.Timings = &pb.Timings{AcceptedAt: at, FirstTokenAt: later}
			} else if n%2 == 0 {
				fin.Timings = &pb.Timings{AcceptedAt: at, DispatchedAt: at, FirstTokenAt: later, CompletedAt: later}
			}
			res.Body = &pb.Result_Final{Final: fin}
		case 2:
			res.Body = &pb.Result_Error{Error: &pb.Error{Code: key, Message: text, Retryable: flag}}
		}
		for _, v := range []view{{}, {backend: true}, {timings: true}, {backend: true, timings: true}} {
			prefix := []byte("x")
			fast, ok := appendAnswer(prefix, res, v)
			var want bytes.Buffer
			err := appendJSON(&want, answerOf(res, v))
			if res.GetBody() == nil {
				if ok {
					t.Fatalf("a result without a body took the fast path: %s", fast)
				}
				continue
			}
			if (err == nil) != ok {
				t.Fatalf("%v: protojson error %v, fast path ok %v", v, err, ok)
			}
			if ok && !bytes.Equal(fast[1:], want.Bytes()) {
				t.Fatalf("%v:\nprotojson %s\nfast      %s", v, want.Bytes(), fast[1:])
			}
			if !ok && !bytes.Equal(fast, prefix) {
				t.Fatalf("refused, but the buffer changed: %q", fast)
			}
		}
	})
}
