package keyorder

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// tracker follows one partition's offsets from its low watermark: which
// records taken from the partition are finished and which are not. The
// state is a list of run lengths that alternate between unfinished and
// finished offsets, starting with an unfinished run at base (the low
// watermark: the lowest offset not known to be finished).
//
// Each taken record claims the offsets from the end of the previous claim
// up to its own: offsets between records (transaction markers, compacted
// records) belong to the record after them and are finished with it. So
// taking a record never adds a run: the runs, and the commit metadata made
// of them, grow only when a record finishes, which the engine admits
// against the metadata bound (see heldBack).
//
// The same runs, up to the last finished one, are the commit metadata that
// lets the next owner skip finished work above the committed watermark.
type tracker struct {
	base int64   // low watermark
	end  int64   // one past the highest offset taken
	runs []int64 // runs[0] unfinished, runs[1] finished, ...; no zero runs
}

func newTracker(start int64) *tracker { return &tracker{base: start, end: start} }

// take records that offset o (at or after end) is now being worked on and
// returns the first offset of its claim: o itself, or the first of the
// offsets without records before it. finish takes the same claim.
func (t *tracker) take(o int64) (from int64) {
	if o < t.end {
		return o // taken already (a refetch): nothing changes
	}
	from = t.end
	if n := len(t.runs); n%2 == 1 {
		t.runs[n-1] += o - from + 1 // the last run is unfinished: it grows
	} else {
		t.runs = append(t.runs, o-from+1)
	}
	t.end = o + 1
	return from
}

// finish marks the claim [from, o] of a taken record finished. It reports
// false if that claim was not an unfinished one being tracked.
func (t *tracker) finish(from, o int64) bool {
	if from > o || from < t.base || o >= t.end {
		return false
	}
	pos := t.base
	for i := 0; i < len(t.runs); i++ {
		r := t.runs[i]
		if o >= pos+r {
			pos += r
			continue
		}
		if i%2 == 1 || from < pos {
			return false // already finished, or not one claim
		}
		before, after := from-pos, pos+r-o-1
		// Replace runs[i] by before(U) claim(F) after(U), then drop empty
		// runs by merging their neighbours.
		repl := []int64{before, o - from + 1, after}
		t.runs = append(t.runs[:i], append(repl, t.runs[i+1:]...)...)
		t.normalize()
		return true
	}
	return false
}

// normalize drops zero-length runs, merges the runs of one kind that
// become neighbours, and moves the watermark past a leading finished run,
// so that runs again alternate and start unfinished.
func (t *tracker) normalize() {
	out := t.runs[:0]
	outFinished := false // kind of out's last run
	for i, r := range t.runs {
		finished := i%2 == 1
		if r == 0 {
			continue
		}
		if len(out) > 0 && outFinished == finished {
			out[len(out)-1] += r
			continue
		}
		if len(out) == 0 && finished {
			t.base += r // finished work at the bottom: the watermark moves
			continue
		}
		out = append(out, r)
		outFinished = finished
	}
	t.runs = out
}

// isFinished reports whether offset o (below end) is finished.
func (t *tracker) isFinished(o int64) bool {
	if o < t.base {
		return true
	}
	pos := t.base
	for i, r := range t.runs {
		if o < pos+r {
			return i%2 == 1
		}
		pos += r
	}
	return false
}

// watermark returns the lowest offset not known to be finished: the offset
// to commit.
func (t *tracker) watermark() int64 { return t.base }

// unfinished returns how many offsets at or above the watermark are not
// finished.
func (t *tracker) unfinished() (n int64) {
	for i := 0; i < len(t.runs); i += 2 {
		n += t.runs[i]
	}
	return n
}

// finishedAbove returns how many finished offsets lie above the
// watermark: finished work the committed offset cannot yet include.
func (t *tracker) finishedAbove() (n int64) {
	for i := 1; i < len(t.runs); i += 2 {
		n += t.runs[i]
	}
	return n
}

// metadataPrefix versions the commit metadata format.
const metadataPrefix = "ko1:"

// metadata encodes the finished offsets above the watermark: the runs up to
// the last finished one, as unsigned varints, base64url without padding,
// behind metadataPrefix. Empty when nothing above the watermark is
// finished.
func (t *tracker) metadata() string {
	n := len(t.runs)
	if n%2 == 1 {
		n-- // a trailing unfinished run is implied
	}
	if n == 0 {
		return ""
	}
	buf := make([]byte, 0, n*2)
	for _, r := range t.runs[:n] {
		buf = binary.AppendUvarint(buf, uint64(r))
	}
	return metadataPrefix + base64.RawURLEncoding.EncodeToString(buf)
}

// metadataSize returns len(t.metadata()) without building it.
func (t *tracker) metadataSize() int {
	n := len(t.runs)
	if n%2 == 1 {
		n--
	}
	if n == 0 {
		return 0
	}
	raw := 0
	for _, r := range t.runs[:n] {
		raw += uvarintLen(uint64(r))
	}
	return len(metadataPrefix) + base64.RawURLEncoding.EncodedLen(raw)
}

// growthBound is the most one more finished offset can add to
// metadataSize: splitting a run adds two runs, each at most as long as the
// window in varint bytes.
func (t *tracker) growthBound() int {
	w := uvarintLen(uint64(t.end - t.base + 1))
	return base64.RawURLEncoding.EncodedLen(2*w) + 2
}

func uvarintLen(v uint64) int {
	n := 1
	for v >= 0x80 {
		v >>= 7
		n++
	}
	return n
}

// finishedSet is a decoded commit metadata: ranges of offsets, above a
// committed watermark, that an earlier owner finished.
type finishedSet struct {
	ranges [][2]int64 // [from, to) ascending, disjoint
}

// errMetadata wraps every metadata decoding failure.
var errMetadata = errors.New("commit metadata")

// decodeMetadata parses metadata written by tracker.metadata for a commit
// at watermark. Empty metadata (or metadata not written by this package)
// decodes to an empty set and no error when it lacks our prefix: other
// tools may commit to the group too.
func decodeMetadata(watermark int64, md string) (*finishedSet, error) {
	fs := &finishedSet{}
	if !strings.HasPrefix(md, metadataPrefix) {
		return fs, nil
	}
	raw, err := base64.RawURLEncoding.DecodeString(md[len(metadataPrefix):])
	if err != nil {
		return fs, fmt.Errorf("%w: %w", errMetadata, err)
	}
	pos := watermark
	for i := 0; len(raw) > 0; i++ {
		v, n := binary.Uvarint(raw)
		if n <= 0 {
			return &finishedSet{}, fmt.Errorf("%w: bad varint at run %d", errMetadata, i)
		}
		raw = raw[n:]
		if v == 0 || v > 1<<40 {
			return &finishedSet{}, fmt.Errorf("%w: run %d has length %d", errMetadata, i, v)
		}
		next := pos + int64(v)
		if i%2 == 1 {
			fs.ranges = append(fs.ranges, [2]int64{pos, next})
		}
		pos = next
	}
	return fs, nil
}

// contains reports whether offset o was finished.
func (fs *finishedSet) contains(o int64) bool {
	// Ranges are few (bounded by the metadata size): a linear scan is fine.
	for _, r := range fs.ranges {
		if o < r[0] {
			return false
		}
		if o < r[1] {
			return true
		}
	}
	return false
}
