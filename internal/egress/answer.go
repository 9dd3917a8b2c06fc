package egress

import (
	"bytes"
	"encoding/json"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/tenant"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// view is what one tenant's clients see of final results beyond the
// answer (the tenant's show list): the backend's name and the timings.
type view struct{ backend, timings bool }

// viewOf returns t's view; a nil tenant (no tenants file) sees neither.
func viewOf(t *tenant.Tenant) view {
	return view{backend: t.Shows(tenant.ShowBackend), timings: t.Shows(tenant.ShowTimings)}
}

func (v view) index() int {
	i := 0
	if v.backend {
		i |= 1
	}
	if v.timings {
		i |= 2
	}
	return i
}

// answerOf is what a client with view v sees of res.
func answerOf(res *pb.Result, v view) *pb.Answer { return envelope.Answer(res, v.backend, v.timings) }

// lazyJSON encodes a result's answer to its API JSON on first use, once
// per view, however many streams (on their own goroutines) ask.
type lazyJSON struct {
	res   *pb.Result
	views [4]struct {
		once sync.Once
		data []byte
		err  error
	}
}

func (l *lazyJSON) bytes(v view) ([]byte, error) {
	if l.res.GetFinal() == nil {
		v = view{} // every view sees a chunk or an error the same
	}
	e := &l.views[v.index()]
	e.once.Do(func() {
		if data, ok := appendAnswer(nil, l.res, v); ok {
			e.data = data
			return
		}
		var buf bytes.Buffer
		e.err = appendJSON(&buf, answerOf(l.res, v))
		e.data = buf.Bytes()
	})
	return e.data, e.err
}

// appendJSON writes m in the API's JSON form: protojson with the .proto
// field names, compacted (protojson varies its spacing on purpose; clients
// get one stable form).
func appendJSON(buf *bytes.Buffer, m proto.Message) error {
	data, err := envelope.JSON.Marshal(m)
	if err != nil {
		return err
	}
	return json.Compact(buf, data)
}
