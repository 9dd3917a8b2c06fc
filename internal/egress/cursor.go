package egress

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// cursor is a place in the results topic: the "partition:offset" of the
// last event a client has (offset -1: nothing yet). Every event of every
// transport carries one; a client resumes by handing it back.
type cursor struct {
	partition int32
	offset    int64
}

func (c cursor) String() string { return fmt.Sprintf("%d:%d", c.partition, c.offset) }

// maxCursorLen bounds the text parseCursor looks at: two decimal integers
// and a colon.
const maxCursorLen = 40

// parseCursor decodes a client's "partition:offset".
func parseCursor(s string) (cursor, error) {
	if len(s) > maxCursorLen {
		return cursor{}, fmt.Errorf("cursor of %d bytes: want partition:offset", len(s))
	}
	p, o, ok := strings.Cut(s, ":")
	pi, perr := strconv.ParseInt(p, 10, 32)
	oi, oerr := strconv.ParseInt(o, 10, 64)
	if !ok || perr != nil || oerr != nil || pi < 0 || oi < -1 || oi == math.MaxInt64 {
		return cursor{}, fmt.Errorf("cursor %q: want partition:offset", s)
	}
	return cursor{int32(pi), oi}, nil
}
