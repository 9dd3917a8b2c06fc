package llm

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// maxEventBytes bounds one SSE line and one event's data, so a hostile
// backend cannot exhaust memory.
const maxEventBytes = 1 << 20

// errEventTooLarge reports a line or event past the reader's bound.
var errEventTooLarge = errors.New("sse: event too large")

// sseEvent is one server-sent event that carried data.
type sseEvent struct {
	// Name is the event field, empty for the default "message" event.
	Name string
	// Data is the data fields joined with "\n". It is only valid until the
	// next call to next.
	Data []byte
}

// sseReader parses a text/event-stream as the WHATWG HTML standard
// describes: lines end with CRLF, LF or CR; an empty line dispatches the
// event; lines starting with ':' are comments; "field: value" loses one
// space after the colon; data fields accumulate; id and retry are ignored.
// Events without data are not returned. At the end of the input an
// unfinished event is returned only if its last line was complete, so an
// event cut mid-line by a broken connection is never returned.
type sseReader struct {
	sc    *bufio.Scanner
	max   int
	ended bool // whether the last line scanned had a line ending
	name  []byte
	data  []byte
}

// newSSEReader reads events from r, each line and each event's data at
// most maxBytes long.
func newSSEReader(r io.Reader, maxBytes int) *sseReader {
	s := &sseReader{sc: bufio.NewScanner(r), max: maxBytes}
	s.sc.Buffer(make([]byte, 0, min(4096, maxBytes+2)), maxBytes+2) // +2: room for a CRLF
	s.sc.Split(s.splitLines)
	return s
}

// splitLines is a bufio.SplitFunc for SSE lines; it records in ended
// whether each line had its terminator.
func (s *sseReader) splitLines(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		if data[i] == '\n' {
			s.ended = true
			return i + 1, data[:i], nil
		}
		switch { // CR: see whether an LF follows
		case i+1 < len(data):
			s.ended = true
			if data[i+1] == '\n' {
				return i + 2, data[:i], nil
			}
			return i + 1, data[:i], nil
		case atEOF:
			s.ended = true
			return i + 1, data[:i], nil
		default:
			return 0, nil, nil
		}
	}
	if atEOF && len(data) > 0 {
		s.ended = false
		return len(data), data, nil
	}
	return 0, nil, nil
}

// next returns the next event with data, or io.EOF at the clean end of the
// input, errEventTooLarge past the bound, or the reader's error.
func (s *sseReader) next() (sseEvent, error) {
	s.name, s.data = s.name[:0], s.data[:0]
	hasData := false
	for s.sc.Scan() {
		line := s.sc.Bytes()
		if len(line) > s.max {
			return sseEvent{}, fmt.Errorf("%w: line longer than %d bytes", errEventTooLarge, s.max)
		}
		if len(line) == 0 {
			if hasData {
				return sseEvent{Name: string(s.name), Data: s.data}, nil
			}
			s.name = s.name[:0]
			continue
		}
		if line[0] == ':' {
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value, _ = bytes.CutPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if hasData {
				s.data = append(s.data, '\n')
			}
			if len(s.data)+len(value) > s.max {
				return sseEvent{}, fmt.Errorf("%w: data longer than %d bytes", errEventTooLarge, s.max)
			}
			s.data = append(s.data, value...)
			hasData = true
		case "event":
			s.name = append(s.name[:0], value...)
		}
	}
	if err := s.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return sseEvent{}, fmt.Errorf("%w: line longer than %d bytes", errEventTooLarge, s.max)
		}
		return sseEvent{}, err
	}
	if hasData && s.ended {
		s.ended = false // the next call reports io.EOF
		return sseEvent{Name: string(s.name), Data: s.data}, nil
	}
	return sseEvent{}, io.EOF
}
