package egress

import (
	"slices"
	"strconv"
	"unicode/utf8"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// appendChunkAnswer appends the API JSON of a chunk's answer, byte for
// byte what appendJSON(answerOf(res, v)) writes for every view v, without
// protojson's reflection and the compaction after it. Chunks are most of
// the events a stream sends, and encoding them was the largest share of
// egress's CPU (docs/BENCHMARKS.md, issue 18). It returns false, and b as
// it was, when res is not a chunk or holds a string that is not valid
// UTF-8 (protojson refuses those; the caller lets it say so).
// FuzzChunkAnswerJSON holds it to protojson.
func appendChunkAnswer(b []byte, res *pb.Result) ([]byte, bool) {
	ch := res.GetChunk()
	if ch == nil {
		return b, false
	}
	start := len(b)
	ok := true
	str := func(s string) {
		if ok {
			b, ok = appendJSONString(b, s)
		}
	}
	md := res.GetMetadata()
	keys := make([]string, 0, len(md))
	size := 96 + len(res.GetRequestId()) + len(res.GetConversationId()) + len(ch.GetDelta())
	for k, v := range md {
		keys = append(keys, k)
		size += len(k) + len(v) + 6
	}
	slices.Sort(keys) // protojson writes a map's entries in key order
	b = slices.Grow(b, size)
	b = append(b, `{"request_id":`...)
	str(res.GetRequestId())
	b = append(b, `,"conversation_id":`...)
	str(res.GetConversationId())
	b = append(b, `,"attempt":`...)
	b = strconv.AppendInt(b, int64(res.GetAttempt()), 10)
	b = append(b, `,"metadata":{`...)
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		str(k)
		b = append(b, ':')
		str(md[k])
	}
	b = append(b, `},"chunk":{"index":`...)
	b = strconv.AppendInt(b, int64(ch.GetIndex()), 10)
	b = append(b, `,"delta":`...)
	str(ch.GetDelta())
	b = append(b, "}}"...)
	if !ok {
		return b[:start], false
	}
	return b, true
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
