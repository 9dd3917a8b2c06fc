package egress

import (
	"context"
	"fmt"
	"time"
)

// offsetAt returns the first offset of partition at or after t (the end
// if there is none).
func (e *Egress) offsetAt(ctx context.Context, partition int32, t time.Time) (int64, error) {
	listed, err := e.adm.ListOffsetsAfterMilli(ctx, t.UnixMilli(), e.topic)
	if err != nil {
		return 0, err
	}
	o, ok := listed.Lookup(e.topic, partition)
	if !ok {
		return 0, fmt.Errorf("partition %d not listed", partition)
	}
	if o.Err != nil {
		return 0, o.Err
	}
	return o.Offset, nil
}

// replayBounds narrows [from, to) to what partition still holds: retention
// may have deleted the start (or all) of the range, and a replay that
// waited for deleted records would wait for its whole timeout. need is the
// first offset the client has not seen: a deletion above it is a gap in
// its stream, logged and counted.
func (e *Egress) replayBounds(ctx context.Context, partition int32, from, to, need int64) (int64, int64, error) {
	starts, err := e.adm.ListStartOffsets(ctx, e.topic)
	if err != nil {
		return 0, 0, err
	}
	ends, err := e.adm.ListEndOffsets(ctx, e.topic)
	if err != nil {
		return 0, 0, err
	}
	s, ok1 := starts.Lookup(e.topic, partition)
	en, ok2 := ends.Lookup(e.topic, partition)
	if !ok1 || !ok2 {
		return 0, 0, fmt.Errorf("partition %d not listed", partition)
	}
	if s.Err != nil {
		return 0, 0, s.Err
	}
	if en.Err != nil {
		return 0, 0, en.Err
	}
	if need < min(s.Offset, to) {
		e.metrics.replayGaps.Inc()
		e.log.Info("replay starts after the requested offset: retention deleted the records between",
			"partition", partition, "requested", need, "log_start", s.Offset)
	}
	from = max(from, s.Offset)
	return from, min(to, en.Offset), nil
}

// replay sends conv's results of partition from offset from up to (not
// including) to through send, read by the replay pool (replaypool.go)
// (need: see replayBounds). It ends at once when the partition no longer
// holds anything of the range.
func (e *Egress) replay(ctx context.Context, conv string, partition int32, from, to, need int64, send func(event) error) error {
	ctx, cancel := context.WithTimeout(ctx, e.cfg.ReplayTimeout)
	defer cancel()
	from, to, err := e.replayBounds(ctx, partition, from, to, need)
	if err != nil {
		return fmt.Errorf("replay %d..%d: %w", from, to, err)
	}
	if from >= to {
		return nil
	}
	return e.replays.replay(ctx, e.stop, conv, partition, from, to, send)
}
