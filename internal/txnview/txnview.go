// Package txnview gives a read_uncommitted reader of the results topic a
// committed view of its transactional records: router-worker's
// --exactly-once writes terminal results (and dead letters) in Kafka
// transactions, while streamed chunks are plain records written at once.
// Egress and ingress's OpenAI front read read_uncommitted so that chunks
// arrive without waiting for any transaction; a Filter per partition then
// holds each transactional record back until its transaction's end marker
// (a control record, kept by kgo.KeepControlRecords) and lets it through
// at a commit, or drops it at an abort. A client never sees a terminal
// result of a transaction that aborted, and waits for no transaction but
// the one that carries its result (read_committed would hold every record,
// chunks included, behind the oldest transaction open on the partition).
//
// A record let through at its marker becomes visible at the marker's
// offset: readers that hand out positions (egress cursors) use that offset,
// so positions grow in the order records are seen.
//
// A Filter must see a transaction's records to let them through: a reader
// that starts inside an open transaction misses its records, so readers
// start at or before the partition's last stable offset
// (kadm.ListCommittedOffsets), the first offset of the oldest open one.
package txnview

import (
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Outcome is what a record did to the view.
type Outcome int

// Outcomes of Filter.Add.
const (
	// Visible: a plain record, visible at once.
	Visible Outcome = iota
	// Held: a record of an open transaction, held until its end.
	Held
	// Committed: a commit marker; the transaction's held records are
	// visible now.
	Committed
	// Aborted: an abort marker; the transaction's held records are
	// dropped.
	Aborted
	// Unknown: a control record that is neither marker; nothing changes.
	Unknown
)

// Filter is the committed view of one partition. It is not safe for
// concurrent use: one reader goroutine feeds it.
type Filter struct {
	open map[int64][]*kgo.Record // held records by producer ID, offset order
	held int
}

// Add takes the partition's next record (offsets increasing) and calls
// visible for each record it makes visible: rec itself when it is not
// transactional; at a commit marker, the transaction's held records in
// offset order. It returns what rec did and, for a marker, how many
// records it let through or dropped.
func (f *Filter) Add(rec *kgo.Record, visible func(*kgo.Record)) (Outcome, int) {
	switch {
	case rec.Attrs.IsControl():
		var key kmsg.ControlRecordKey
		if err := key.ReadFrom(rec.Key); err != nil {
			return Unknown, 0
		}
		var out Outcome
		switch key.Type {
		case kmsg.ControlRecordKeyTypeCommit:
			out = Committed
		case kmsg.ControlRecordKeyTypeAbort:
			out = Aborted
		default:
			return Unknown, 0
		}
		recs := f.open[rec.ProducerID]
		delete(f.open, rec.ProducerID)
		f.held -= len(recs)
		if out == Committed {
			for _, r := range recs {
				visible(r)
			}
		}
		return out, len(recs)
	case rec.Attrs.IsTransactional():
		if f.open == nil {
			f.open = map[int64][]*kgo.Record{}
		}
		f.open[rec.ProducerID] = append(f.open[rec.ProducerID], rec)
		f.held++
		return Held, 0
	default:
		visible(rec)
		return Visible, 0
	}
}

// Held returns how many records wait for their transaction's end.
func (f *Filter) Held() int { return f.held }

// Oldest returns the offset of the first record held (false: none): a
// reader that stops and later reads the partition again from there sees
// every transaction whose records it holds now.
func (f *Filter) Oldest() (int64, bool) {
	oldest, ok := int64(0), false
	for _, recs := range f.open {
		if len(recs) > 0 && (!ok || recs[0].Offset < oldest) {
			oldest, ok = recs[0].Offset, true
		}
	}
	return oldest, ok
}
