package loadtest

import (
	"bufio"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
)

// countDriver records the requests it was given.
type countDriver struct {
	mu   sync.Mutex
	sent []string
}

func (d *countDriver) Name() string { return "http" }
func (d *countDriver) Send(_ context.Context, m Message) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.sent = append(d.sent, m.ID)
	return nil
}
func (d *countDriver) Close() {}

func (d *countDriver) SendCall(ctx context.Context, ms []Message) []error {
	for _, m := range ms {
		_ = d.Send(ctx, m)
	}
	return make([]error, len(ms))
}

// The spread driver sends each request to the next instance in turn, and a
// call whole to one.
func TestSpreadDriverRoundRobin(t *testing.T) {
	ds := []*countDriver{{}, {}, {}}
	d := spread([]Driver{ds[0], ds[1], ds[2]})
	if _, ok := d.(CallSender); !ok {
		t.Fatal("spread of CallSenders is no CallSender")
	}
	if _, ok := d.(RawSender); ok {
		t.Fatal("spread of drivers without SendRaw is a RawSender")
	}
	for i := range 9 {
		if err := d.Send(t.Context(), Message{ID: fmt.Sprint(i)}); err != nil {
			t.Fatal(err)
		}
	}
	for i, x := range ds {
		if got, want := strings.Join(x.sent, ","), fmt.Sprintf("%d,%d,%d", i, i+3, i+6); got != want {
			t.Errorf("instance %d got %s, want %s", i, got, want)
		}
	}
	d.(CallSender).SendCall(t.Context(), []Message{{ID: "x"}, {ID: "y"}})
	if got := ds[0].sent[len(ds[0].sent)-2:]; strings.Join(got, ",") != "x,y" {
		t.Errorf("call split over instances: first instance's last %v", got)
	}
	if one := []Driver{ds[0]}; spread(one) != Driver(ds[0]) {
		t.Error("spread of one driver is not that driver")
	}
}

// watchReader records the conversations it follows.
type watchReader struct {
	opened  bool
	watched []string
}

func (r *watchReader) Name() string                             { return "sse" }
func (r *watchReader) Open(context.Context, func(Answer)) error { r.opened = true; return nil }
func (r *watchReader) Watch(_ context.Context, conv string) error {
	r.watched = append(r.watched, conv)
	return nil
}
func (r *watchReader) Close() {}

// The spread reader opens every instance and follows each conversation on
// exactly one, the same one every time, sharing them out.
func TestSpreadReader(t *testing.T) {
	rs := []*watchReader{{}, {}}
	r := &spreadReader{rs: []Reader{rs[0], rs[1]}}
	if err := r.Open(t.Context(), func(Answer) {}); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		_ = r.Watch(t.Context(), fmt.Sprintf("conv-%d", i))
	}
	_ = r.Watch(t.Context(), "conv-7")
	if !rs[0].opened || !rs[1].opened {
		t.Error("an instance was not opened")
	}
	n0, n1 := len(rs[0].watched), len(rs[1].watched)
	if n0+n1 != 101 || n0 < 25 || n1 < 25 {
		t.Errorf("watches %d and %d: want 101, shared out", n0, n1)
	}
	seen := map[string]int{}
	for i, x := range rs {
		for _, c := range x.watched {
			if j, ok := seen[c]; ok && j != i {
				t.Errorf("%s followed on instances %d and %d", c, j, i)
			}
			seen[c] = i
		}
	}
}

func TestEndpointsInstances(t *testing.T) {
	ep := Endpoints{IngressURL: "http://i1", EgressURL: "http://e1", APIKey: "k",
		MoreIngress: []Instance{{URL: "http://i2", GRPC: "g2"}}, MoreEgress: []Instance{{URL: "http://e2"}, {URL: "http://e3"}}}
	in := ep.ingressEndpoints()
	if len(in) != 2 || in[0].MoreIngress != nil || in[1].IngressURL != "http://i2" || in[1].IngressGRPC != "g2" || in[1].APIKey != "k" || in[1].EgressURL != "http://e1" {
		t.Errorf("ingress endpoints %+v", in)
	}
	eg := ep.egressEndpoints()
	if len(eg) != 3 || eg[0].MoreEgress != nil || eg[2].EgressURL != "http://e3" || eg[0].EgressURL != "http://e1" {
		t.Errorf("egress endpoints %+v", eg)
	}
	d, err := NewDriver("http", ep, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if _, ok := d.(RawSender); !ok {
		t.Error("http drivers over two ingress instances lost SendRaw")
	}
	if s, ok := d.(spreadRawCaller); !ok || len(s.ds) != 2 {
		t.Errorf("http driver over two ingress instances: %T", d)
	}
	r, err := NewReader("sse", ep, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if s, ok := r.(*spreadReader); !ok || len(s.rs) != 3 {
		t.Errorf("sse reader over three egress instances: %T", r)
	}
}

func TestSumFamily(t *testing.T) {
	page := `# HELP switchboard_ingress_requests_total x
# TYPE switchboard_ingress_requests_total counter
switchboard_ingress_requests_total{code="202",lane="interactive",protocol="http"} 40
switchboard_ingress_requests_total{code="202",lane="batch",protocol="http"} 2
switchboard_ingress_requests_total{code="429",lane="interactive",protocol="http"} 7
switchboard_ingress_requests_total_other 100
switchboard_router_requests_total 3
`
	got, err := sumFamily(bufio.NewScanner(strings.NewReader(page)), "switchboard_ingress_requests_total", `code="2`)
	if err != nil || got != 42 {
		t.Errorf("accepted = %v, %v; want 42", got, err)
	}
	got, _ = sumFamily(bufio.NewScanner(strings.NewReader(page)), "switchboard_ingress_requests_total", "")
	if got != 49 {
		t.Errorf("all = %v, want 49", got)
	}
	got, _ = sumFamily(bufio.NewScanner(strings.NewReader(page)), "switchboard_router_requests_total", "")
	if got != 3 {
		t.Errorf("unlabelled = %v, want 3", got)
	}
}
