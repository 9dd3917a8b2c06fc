package loadtest

import (
	"context"
	"errors"
	"hash/fnv"
	"sync/atomic"
)

// Instance is where one more ingress or egress instance listens, beside
// the first of Endpoints (a stack of several instances of each).
type Instance struct {
	// URL is its HTTP API; GRPC its gRPC host:port (empty: none).
	URL, GRPC string
}

// ingressEndpoints returns ep once per ingress instance (without
// MoreIngress): ep itself, then a copy on each of ep.MoreIngress.
func (ep Endpoints) ingressEndpoints() []Endpoints {
	first := ep
	first.MoreIngress = nil
	out := []Endpoints{first}
	for _, in := range ep.MoreIngress {
		e := ep
		e.IngressURL, e.IngressGRPC, e.MoreIngress = in.URL, in.GRPC, nil
		out = append(out, e)
	}
	return out
}

// egressEndpoints returns ep once per egress instance (without
// MoreEgress).
func (ep Endpoints) egressEndpoints() []Endpoints {
	first := ep
	first.MoreEgress = nil
	out := []Endpoints{first}
	for _, in := range ep.MoreEgress {
		e := ep
		e.EgressURL, e.EgressGRPC, e.MoreEgress = in.URL, in.GRPC, nil
		out = append(out, e)
	}
	return out
}

// spreadDriver sends through several drivers of one kind, one per ingress
// instance, each request to the next in turn, as a round-robin load
// balancer in front of the instances would. It keeps Driver's contract: a
// conversation's sends stay serialised by the caller, and each returns only
// once its instance acknowledged it, so the requests topic holds them in
// the order sent whichever instance took each.
type spreadDriver struct {
	ds   []Driver
	next atomic.Uint64
}

func (d *spreadDriver) pick() Driver { return d.ds[(d.next.Add(1)-1)%uint64(len(d.ds))] }

func (d *spreadDriver) Name() string { return d.ds[0].Name() }

func (d *spreadDriver) Send(ctx context.Context, m Message) error { return d.pick().Send(ctx, m) }

func (d *spreadDriver) Close() {
	for _, x := range d.ds {
		x.Close()
	}
}

// spreadCaller is a spreadDriver of CallSenders: each call goes whole to
// one instance.
type spreadCaller struct{ *spreadDriver }

func (d spreadCaller) SendCall(ctx context.Context, ms []Message) []error {
	return d.pick().(CallSender).SendCall(ctx, ms)
}

// spreadRaw is a spreadDriver of RawSenders.
type spreadRaw struct{ *spreadDriver }

func (d spreadRaw) SendRaw(ctx context.Context, conv string, bad Bad) error {
	return d.pick().(RawSender).SendRaw(ctx, conv, bad)
}

// spreadRawCaller is a spreadDriver of drivers that are both.
type spreadRawCaller struct{ *spreadDriver }

func (d spreadRawCaller) SendCall(ctx context.Context, ms []Message) []error {
	return spreadCaller(d).SendCall(ctx, ms)
}

func (d spreadRawCaller) SendRaw(ctx context.Context, conv string, bad Bad) error {
	return spreadRaw(d).SendRaw(ctx, conv, bad)
}

// spread returns one driver over ds (all of one kind): ds[0] alone, or a
// spreadDriver that has the optional methods (CallSender, RawSender) ds
// have.
func spread(ds []Driver) Driver {
	if len(ds) == 1 {
		return ds[0]
	}
	s := &spreadDriver{ds: ds}
	_, call := ds[0].(CallSender)
	_, raw := ds[0].(RawSender)
	switch {
	case call && raw:
		return spreadRawCaller{s}
	case call:
		return spreadCaller{s}
	case raw:
		return spreadRaw{s}
	}
	return s
}

// driversOf builds one driver per ingress instance of ep with build and
// spreads over them; on an error it closes those built.
func driversOf(ep Endpoints, build func(Endpoints) (Driver, error)) (Driver, error) {
	var ds []Driver
	for _, e := range ep.ingressEndpoints() {
		d, err := build(e)
		if err != nil {
			for _, x := range ds {
				x.Close()
			}
			return nil, err
		}
		ds = append(ds, d)
	}
	return spread(ds), nil
}

// spreadReader follows each conversation on one of several readers of one
// kind, one per egress instance, chosen by a hash of the conversation ID
// so that the instances share the streams evenly and a conversation is
// followed once. Every reader delivers into the same ledger.
type spreadReader struct {
	rs []Reader
}

func (r *spreadReader) Name() string { return r.rs[0].Name() }

func (r *spreadReader) Open(ctx context.Context, deliver func(Answer)) error {
	for _, x := range r.rs {
		if err := x.Open(ctx, deliver); err != nil {
			return err
		}
	}
	return nil
}

func (r *spreadReader) Watch(ctx context.Context, conv string) error {
	return r.rs[instanceOf(conv, len(r.rs))].Watch(ctx, conv)
}

func (r *spreadReader) Close() {
	for _, x := range r.rs {
		x.Close()
	}
}

// Reconnects sums the stream readers' reopened streams.
func (r *spreadReader) Reconnects() int {
	n := 0
	for _, x := range r.rs {
		if c, ok := x.(interface{ Reconnects() int }); ok {
			n += c.Reconnects()
		}
	}
	return n
}

// instanceOf is the instance, of n, that follows conv.
func instanceOf(conv string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(conv))
	return int(h.Sum32() % uint32(n))
}

// readersOf builds one reader per egress instance of ep with build and
// spreads the conversations over them; on an error it closes those built.
func readersOf(ep Endpoints, build func(Endpoints) (Reader, error)) (Reader, error) {
	var rs []Reader
	for _, e := range ep.egressEndpoints() {
		r, err := build(e)
		if err != nil {
			for _, x := range rs {
				x.Close()
			}
			return nil, err
		}
		rs = append(rs, r)
	}
	if len(rs) == 1 {
		return rs[0], nil
	}
	return &spreadReader{rs: rs}, nil
}

// openaiReaders returns the openai reader of drv, the openai driver or a
// spread of them: the answers of its own calls, on every instance.
func openaiReaders(drv Driver) (Reader, error) {
	if r, ok := drv.(*openaiDriver); ok {
		return r, nil
	}
	s, ok := drv.(*spreadDriver)
	if !ok {
		return nil, errors.New("not the openai driver")
	}
	var rs []Reader
	for _, d := range s.ds {
		r, ok := d.(*openaiDriver)
		if !ok {
			return nil, errors.New("not the openai driver")
		}
		rs = append(rs, r)
	}
	return &spreadReader{rs: rs}, nil
}
