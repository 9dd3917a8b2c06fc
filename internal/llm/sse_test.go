package llm

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// readAllEvents reads every event of r and the error that ended it.
func readAllEvents(r io.Reader, maxBytes int) ([]sseEvent, error) {
	s := newSSEReader(r, maxBytes)
	var out []sseEvent
	for {
		ev, err := s.next()
		if err != nil {
			return out, err
		}
		out = append(out, sseEvent{Name: ev.Name, Data: append([]byte(nil), ev.Data...)})
	}
}

func TestSSEReader(t *testing.T) {
	ev := func(name, data string) sseEvent { return sseEvent{Name: name, Data: []byte(data)} }
	tests := []struct {
		name    string
		in      string
		max     int
		want    []sseEvent
		wantErr error
	}{
		{name: "empty", in: "", wantErr: io.EOF},
		{name: "one", in: "data: a\n\n", want: []sseEvent{ev("", "a")}, wantErr: io.EOF},
		{name: "no space", in: "data:a\n\n", want: []sseEvent{ev("", "a")}, wantErr: io.EOF},
		{name: "two spaces keep one", in: "data:  a\n\n", want: []sseEvent{ev("", " a")}, wantErr: io.EOF},
		{name: "crlf", in: "data: a\r\n\r\ndata: b\r\n\r\n", want: []sseEvent{ev("", "a"), ev("", "b")}, wantErr: io.EOF},
		{name: "cr", in: "data: a\r\rdata: b\r\r", want: []sseEvent{ev("", "a"), ev("", "b")}, wantErr: io.EOF},
		{name: "multi-line data", in: "data: a\ndata: b\ndata\n\n", want: []sseEvent{ev("", "a\nb\n")}, wantErr: io.EOF},
		{name: "comments and fields", in: ": hi\nid: 1\nretry: 5\nevent: error\ndata: x\n\n", want: []sseEvent{ev("error", "x")}, wantErr: io.EOF},
		{name: "event name resets", in: "event: a\n\ndata: x\n\n", want: []sseEvent{ev("", "x")}, wantErr: io.EOF},
		{name: "no data no event", in: ": only\n\nevent: e\n\n", wantErr: io.EOF},
		{name: "last event without blank line", in: "data: a\n\ndata: [DONE]\n", want: []sseEvent{ev("", "a"), ev("", "[DONE]")}, wantErr: io.EOF},
		{name: "cut mid-line dropped", in: "data: a\n\ndata: {\"x", want: []sseEvent{ev("", "a")}, wantErr: io.EOF},
		{name: "line at limit", in: "data: 1234\r\n\r\n", max: 10, want: []sseEvent{ev("", "1234")}, wantErr: io.EOF},
		{name: "line past limit", in: "data: 12345678\n\n", max: 10, wantErr: errEventTooLarge},
		{name: "data past limit", in: "data: 1234\ndata: 1234\ndata: 1234\n\n", max: 10, wantErr: errEventTooLarge},
		{name: "long comment", in: ":" + strings.Repeat("x", 100) + "\ndata: a\n\n", max: 10, wantErr: errEventTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			limit := tt.max
			if limit == 0 {
				limit = maxEventBytes
			}
			for _, r := range []io.Reader{strings.NewReader(tt.in), iotest.OneByteReader(strings.NewReader(tt.in))} {
				got, err := readAllEvents(r, limit)
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("error = %v, want %v", err, tt.wantErr)
				}
				if len(got) != len(tt.want) || (len(got) > 0 && !reflect.DeepEqual(got, tt.want)) {
					t.Errorf("events = %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestSSEReaderError(t *testing.T) {
	boom := errors.New("boom")
	r := io.MultiReader(strings.NewReader("data: a\n\ndata: b"), iotest.ErrReader(boom))
	got, err := readAllEvents(r, 64)
	if !errors.Is(err, boom) || len(got) != 1 || string(got[0].Data) != "a" {
		t.Errorf("events %q, error %v; want [a] and boom", got, err)
	}
}

// FuzzSSE checks that the SSE parser never panics, respects its bound, and
// gives the same events however the input is split into reads.
func FuzzSSE(f *testing.F) {
	for _, seed := range []string{
		"data: a\n\n",
		"data: a\r\n\r\ndata: [DONE]\r\n\r\n",
		"data: a\rdata: b\r\r",
		": c\nevent: error\ndata: {\"error\":{}}\n\n",
		"data: " + strings.Repeat("x", 40) + "\n\n",
		"data: a\ndata\n\ndata: {\"cut",
		"\r",
		"data: a\r",
	} {
		f.Add([]byte(seed))
	}
	const limit = 32
	f.Fuzz(func(t *testing.T, in []byte) {
		whole, wholeErr := readAllEvents(strings.NewReader(string(in)), limit)
		bytewise, byteErr := readAllEvents(iotest.OneByteReader(strings.NewReader(string(in))), limit)
		half, halfErr := readAllEvents(iotest.HalfReader(strings.NewReader(string(in))), limit)
		if !errors.Is(wholeErr, io.EOF) && !errors.Is(wholeErr, errEventTooLarge) {
			t.Fatalf("unexpected error %v", wholeErr)
		}
		for _, other := range []struct {
			events []sseEvent
			err    error
		}{{bytewise, byteErr}, {half, halfErr}} {
			if !reflect.DeepEqual(whole, other.events) || errors.Is(wholeErr, io.EOF) != errors.Is(other.err, io.EOF) {
				t.Fatalf("split reads disagree:\nwhole %q %v\nsplit %q %v", whole, wholeErr, other.events, other.err)
			}
		}
		for _, ev := range whole {
			if len(ev.Data) > limit {
				t.Fatalf("event data %d bytes, bound %d", len(ev.Data), limit)
			}
		}
	})
}
