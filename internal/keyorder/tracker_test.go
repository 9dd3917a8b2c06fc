package keyorder

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func TestTrackerAgainstModel(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 1))
		start := int64(rng.IntN(1000))
		tr := newTracker(start)
		var open [][2]int64      // claims [from, o] of taken records
		done := map[int64]bool{} // finished claims, at or above start
		next := start
		for step := 0; step < 300; step++ {
			if len(open) == 0 || rng.IntN(3) > 0 {
				gap := int64(0)
				if rng.IntN(5) == 0 {
					gap = int64(rng.IntN(4))
				}
				from := tr.take(next + gap)
				if from != next {
					t.Fatalf("seed %d: take(%d) claims from %d, want %d", seed, next+gap, from, next)
				}
				open = append(open, [2]int64{from, next + gap})
				next += gap + 1
			} else {
				i := rng.IntN(len(open))
				c := open[i]
				open = slices.Delete(open, i, i+1)
				if !tr.finish(c[0], c[1]) {
					t.Fatalf("seed %d: finish(%v) = false for an open claim", seed, c)
				}
				for o := c[0]; o <= c[1]; o++ {
					done[o] = true
				}
			}
			// The watermark is the lowest offset not done.
			want := start
			for done[want] {
				want++
			}
			if want > next {
				want = next
			}
			if got := tr.watermark(); got != want {
				t.Fatalf("seed %d step %d: watermark %d, want %d (runs %v)", seed, step, got, want, tr.runs)
			}
			var openOffsets int64
			for _, c := range open {
				openOffsets += c[1] - c[0] + 1
			}
			if got, want := tr.unfinished(), openOffsets; got != want {
				t.Fatalf("seed %d: unfinished %d, want %d", seed, got, want)
			}
			if sz := tr.metadataSize(); sz != len(tr.metadata()) {
				t.Fatalf("seed %d: metadataSize %d, len(metadata) %d", seed, sz, len(tr.metadata()))
			}
			// The metadata decodes to exactly the done offsets above the watermark.
			fs, err := decodeMetadata(tr.watermark(), tr.metadata())
			if err != nil {
				t.Fatal(err)
			}
			for o := tr.watermark(); o < next; o++ {
				if fs.contains(o) != done[o] {
					t.Fatalf("seed %d: offset %d: in metadata %v, done %v (runs %v)", seed, o, fs.contains(o), done[o], tr.runs)
				}
			}
		}
	}
}

func TestTrackerFinishTwice(t *testing.T) {
	tr := newTracker(10)
	tr.take(10)
	tr.take(11)
	tr.take(14) // after a gap: claims 12-14
	if !tr.finish(11, 11) || tr.finish(11, 11) || tr.finish(9, 9) || tr.finish(15, 15) || tr.finish(10, 11) {
		t.Fatal("finish must accept each taken claim once and nothing else")
	}
	if tr.watermark() != 10 || tr.finishedAbove() != 1 {
		t.Errorf("watermark %d finishedAbove %d, want 10 and 1", tr.watermark(), tr.finishedAbove())
	}
	tr.finish(10, 10)
	if tr.watermark() != 12 {
		t.Errorf("watermark %d, want 12", tr.watermark())
	}
	tr.finish(12, 14)
	if tr.watermark() != 15 || len(tr.runs) != 0 || tr.metadata() != "" {
		t.Errorf("after finishing all: watermark %d runs %v metadata %q", tr.watermark(), tr.runs, tr.metadata())
	}
}

// TestGapsDoNotGrowMetadata: offsets without records (transaction markers)
// between taken records must not grow the metadata while nothing finishes:
// only finishing is admitted against the bound.
func TestGapsDoNotGrowMetadata(t *testing.T) {
	tr := newTracker(0)
	for i := range int64(1500) {
		tr.take(2*i + 1) // a marker, then a record
	}
	if sz := tr.metadataSize(); sz != 0 || len(tr.runs) != 1 {
		t.Fatalf("1500 records after markers, none finished: metadata %d bytes, runs %v; want none", sz, tr.runs)
	}
	if !tr.finish(2, 3) || tr.watermark() != 0 || tr.metadata() == "" {
		t.Fatalf("finishing the second claim: watermark %d metadata %q", tr.watermark(), tr.metadata())
	}
	if !tr.finish(0, 1) || tr.watermark() != 4 {
		t.Fatalf("finishing the first claim: watermark %d, want 4", tr.watermark())
	}
}

func TestDecodeMetadataErrors(t *testing.T) {
	for _, md := range []string{"ko1:***", "ko1:gA", "ko1:AA", "ko1:" + strings.Repeat("_", 20)} {
		if _, err := decodeMetadata(0, md); err == nil {
			t.Errorf("decodeMetadata(%q) = nil error, want one", md)
		}
	}
	for _, md := range []string{"", "someone else's metadata", "member-1"} {
		fs, err := decodeMetadata(0, md)
		if err != nil || len(fs.ranges) != 0 {
			t.Errorf("decodeMetadata(%q) = %v, %v; want an empty set", md, fs.ranges, err)
		}
	}
}

// TestMetadataStaysUnderLimit drives a worst case: every other offset
// finished, so each finished offset is its own run. The admission rule
// (size + growth bound per in-flight record <= limit) must keep the
// encoding under the limit however the in-flight records finish.
func TestMetadataStaysUnderLimit(t *testing.T) {
	const limit = 3584
	rng := rand.New(rand.NewPCG(7, 7))
	tr := newTracker(1_000_000_000) // large offsets: long varints are not the issue, runs are
	tr.take(tr.end)                 // the watermark record stays open throughout
	var inflight [][2]int64
	maxSeen, refused := 0, 0
	for step := 0; step < 20000; step++ {
		admit := tr.metadataSize()+(len(inflight)+1)*tr.growthBound() <= limit
		if !admit {
			refused++
		}
		if admit {
			o := tr.end + int64(rng.IntN(2)) // sometimes leave a gap
			inflight = append(inflight, [2]int64{tr.take(o), o})
		} else if len(inflight) > 0 {
			i := rng.IntN(len(inflight))
			tr.finish(inflight[i][0], inflight[i][1])
			inflight = slices.Delete(inflight, i, i+1)
		}
		if sz := tr.metadataSize(); sz > maxSeen {
			maxSeen = sz
		}
		if sz := tr.metadataSize(); sz > limit {
			t.Fatalf("step %d: metadata is %d bytes, over the %d limit", step, sz, limit)
		}
	}
	if refused == 0 {
		t.Errorf("the admission rule never refused a record: the test proves nothing")
	}
	t.Logf("largest metadata: %d bytes of %d; admission refused %d times", maxSeen, limit, refused)
}

// TestMetadataWorstCase: every other offset finished, one run each.
func TestMetadataWorstCase(t *testing.T) {
	tr := newTracker(0)
	for o := range int64(4000) {
		tr.take(o)
	}
	for o := int64(1); o < 4000; o += 2 {
		tr.finish(o, o)
	}
	if got, want := len(tr.runs), 4000; got != want {
		t.Fatalf("runs = %d, want %d", got, want)
	}
	md := tr.metadata()
	fs, err := decodeMetadata(0, md)
	if err != nil || len(fs.ranges) != 2000 {
		t.Fatalf("decoded %d ranges (%v), want 2000", len(fs.ranges), err)
	}
	if len(md) <= 4096 {
		t.Errorf("metadata is %d bytes: this pattern must exceed Kafka's limit, which is why admission bounds it", len(md))
	}
}

func FuzzDecodeMetadata(f *testing.F) {
	tr := newTracker(5)
	for o := int64(5); o < 20; o++ {
		tr.take(o)
	}
	tr.finish(7, 7)
	tr.finish(12, 12)
	f.Add(int64(5), tr.metadata())
	f.Add(int64(0), "ko1:")
	f.Add(int64(-1), "ko1:AQEBAQ")
	f.Fuzz(func(t *testing.T, w int64, md string) {
		fs, err := decodeMetadata(w, md)
		if err != nil {
			return
		}
		for i, r := range fs.ranges {
			if r[0] >= r[1] || (i > 0 && r[0] <= fs.ranges[i-1][1]-1) {
				t.Fatalf("ranges %v are not ascending and disjoint", fs.ranges)
			}
		}
	})
}
