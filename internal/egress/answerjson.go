package egress

import (
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// appendAnswer appends the API JSON of res's answer as view v shows it,
// byte for byte what appendJSON(answerOf(res, v)) writes, without
// protojson's reflection and the compaction after it: encoding answers was
// the largest share of egress's CPU (docs/BENCHMARKS.md, issue 18). It
// returns false, and b as it was, for what protojson refuses (a string
// that is not valid UTF-8, a timestamp out of range) or a result without a
// body; the caller lets protojson say so. FuzzAnswerJSON holds it to
// protojson.
func appendAnswer(b []byte, res *pb.Result, v view) ([]byte, bool) {
	start := len(b)
	w := answerWriter{b: b, ok: true}
	md := res.GetMetadata()
	keys := make([]string, 0, len(md))
	size := 128 + len(res.GetRequestId()) + len(res.GetConversationId())
	for k, val := range md {
		keys = append(keys, k)
		size += len(k) + len(val) + 6
	}
	slices.Sort(keys) // protojson writes a map's entries in key order
	switch body := res.GetBody().(type) {
	case *pb.Result_Chunk:
		size += len(body.Chunk.GetDelta())
	case *pb.Result_Final:
		size += len(body.Final.GetContent()) + 256
	case *pb.Result_Error:
		size += len(body.Error.GetMessage())
	}
	w.b = slices.Grow(w.b, size)
	w.raw(`{"request_id":`)
	w.str(res.GetRequestId())
	w.raw(`,"conversation_id":`)
	w.str(res.GetConversationId())
	w.raw(`,"attempt":`)
	w.int(int64(res.GetAttempt()))
	w.raw(`,"metadata":{`)
	for i, k := range keys {
		if i > 0 {
			w.raw(",")
		}
		w.str(k)
		w.raw(":")
		w.str(md[k])
	}
	w.raw("}")
	switch body := res.GetBody().(type) {
	case *pb.Result_Chunk:
		w.raw(`,"chunk":{"index":`)
		w.int(int64(body.Chunk.GetIndex()))
		w.raw(`,"delta":`)
		w.str(body.Chunk.GetDelta())
		w.raw("}")
	case *pb.Result_Final:
		f := body.Final
		w.raw(`,"final":{"content":`)
		w.str(f.GetContent())
		w.raw(`,"finish_reason":`)
		w.str(f.GetFinishReason())
		if u := f.GetUsage(); u != nil {
			w.raw(`,"usage":{"prompt_tokens":`)
			w.int(int64(u.GetPromptTokens()))
			w.raw(`,"completion_tokens":`)
			w.int(int64(u.GetCompletionTokens()))
			w.raw(`,"total_tokens":`)
			w.int(int64(u.GetTotalTokens()))
			w.raw("}")
		}
		w.raw(`,"backend":`)
		if v.backend {
			w.str(f.GetBackend())
		} else {
			w.str("")
		}
		if tm := f.GetTimings(); tm != nil && v.timings {
			w.raw(`,"timings":{`)
			sep := ""
			for _, ts := range []struct {
				name string
				at   *timestamppb.Timestamp
			}{{"accepted_at", tm.GetAcceptedAt()}, {"dispatched_at", tm.GetDispatchedAt()},
				{"first_token_at", tm.GetFirstTokenAt()}, {"completed_at", tm.GetCompletedAt()}} {
				if ts.at == nil {
					continue
				}
				w.raw(sep + `"` + ts.name + `":`)
				w.timestamp(ts.at)
				sep = ","
			}
			w.raw("}")
		}
		w.raw("}")
	case *pb.Result_Error:
		e := body.Error
		w.raw(`,"error":{"code":`)
		w.str(e.GetCode())
		w.raw(`,"message":`)
		w.str(e.GetMessage())
		w.raw(`,"retryable":`)
		w.b = strconv.AppendBool(w.b, e.GetRetryable())
		w.raw("}")
	default:
		return b[:start], false
	}
	w.raw("}")
	if !w.ok {
		return b[:start], false
	}
	return w.b, true
}

// answerWriter appends JSON; ok turns false at the first value protojson
// would refuse.
type answerWriter struct {
	b  []byte
	ok bool
}

func (w *answerWriter) raw(s string) { w.b = append(w.b, s...) }

func (w *answerWriter) int(n int64) { w.b = strconv.AppendInt(w.b, n, 10) }

func (w *answerWriter) str(s string) {
	if w.ok {
		w.b, w.ok = appendJSONString(w.b, s)
	}
}

// timestamp writes t as protojson does: RFC 3339 in UTC with 0, 3, 6 or 9
// digits of fraction; one out of protobuf's range is refused.
func (w *answerWriter) timestamp(t *timestamppb.Timestamp) {
	const minSeconds, maxSeconds = -62135596800, 253402300799 // 0001-01-01, 9999-12-31
	secs, nanos := t.GetSeconds(), t.GetNanos()
	if secs < minSeconds || secs > maxSeconds || nanos < 0 || nanos >= 1e9 {
		w.ok = false
		return
	}
	x := time.Unix(secs, int64(nanos)).UTC().Format("2006-01-02T15:04:05.000000000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, "000")
	x = strings.TrimSuffix(x, ".000")
	w.raw(`"` + x + `Z"`)
}

// appendJSONString appends s as a JSON string the way protojson writes
// one: only '"', '\\' and control characters escaped (as \b, \f, \n, \r,
// \t or \u00xx), everything else as it is. It returns false when s is not
// valid UTF-8.
func appendJSONString(b []byte, s string) ([]byte, bool) {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	from := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, n := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && n == 1 {
				return b, false
			}
			i += n
			continue
		}
		if c >= ' ' && c != '"' && c != '\\' {
			i++
			continue
		}
		b = append(b, s[from:i]...)
		switch c {
		case '"', '\\':
			b = append(b, '\\', c)
		case '\b':
			b = append(b, '\\', 'b')
		case '\f':
			b = append(b, '\\', 'f')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		case '\t':
			b = append(b, '\\', 't')
		default:
			b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		from = i
	}
	b = append(b, s[from:]...)
	return append(b, '"'), true
}
