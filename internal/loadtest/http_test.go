package loadtest

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestHTTPDriverCodes(t *testing.T) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, string(b))
		mu.Unlock()
		switch {
		case r.URL.Path != "/v1/conversations/c1/messages":
			http.NotFound(w, r)
		case r.Header.Get("Authorization") != "Bearer k1":
			w.WriteHeader(401)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthenticated","message":"x"}}`)
		case r.Header.Get("Content-Type") != "application/json":
			w.WriteHeader(415)
			_, _ = io.WriteString(w, `{"error":{"code":"unsupported_media_type","message":"x"}}`)
		case strings.Contains(string(b), `"model":"busy"`):
			w.WriteHeader(503)
			_, _ = io.WriteString(w, `{"error":{"code":"unavailable","message":"x"}}`)
		default:
			w.WriteHeader(202)
			_, _ = io.WriteString(w, `{"request_id":"r"}`)
		}
	}))
	defer srv.Close()
	d := newHTTPDriver(srv.URL, "k1", 5*time.Second)
	defer d.Close()
	ctx := t.Context()
	if err := d.Send(ctx, Message{ID: "id1", Conversation: "c1", Model: "sim", Lane: "interactive", Content: "hi"}); err != nil {
		t.Fatalf("accepted send: %v", err)
	}
	mu.Lock()
	if !strings.Contains(bodies[0], `"loadtest_id":"id1"`) {
		t.Errorf("body %s lacks the loadtest id in metadata", bodies[0])
	}
	mu.Unlock()
	if got := errorCode(d.Send(ctx, Message{Conversation: "c1", Model: "busy"})); got != "http_503_unavailable" {
		t.Errorf("503: code %q", got)
	}
	if got := errorCode(d.SendRaw(ctx, "c1", Bad{Kind: BadContentType})); got != "http_415_unsupported_media_type" {
		t.Errorf("415: code %q", got)
	}
	// A port nobody listens on.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	d2 := newHTTPDriver("http://"+addr, "", time.Second)
	defer d2.Close()
	if got := errorCode(d2.Send(ctx, Message{Conversation: "c1"})); got != "connect_refused" {
		t.Errorf("refused: code %q", got)
	}
}

func TestHTTPBadBodies(t *testing.T) {
	for _, kind := range HTTPBadKinds {
		b := Bad{ID: "x", Kind: kind, Model: "sim", HugeBytes: 2 << 20}
		body, ct := b.httpBody()
		if body == nil || ct == "" {
			t.Errorf("%s: no body", kind)
		}
		if kind == BadHuge && len(body) < 2<<20 {
			t.Errorf("huge body is %d bytes", len(body))
		}
		if kind == BadUTF8 && !strings.Contains(string(body), "\xff") {
			t.Errorf("bad UTF-8 body %q has no invalid byte", body)
		}
	}
	for _, kind := range KafkaBadKinds {
		if rec := badRecord("t.interactive", "c", Bad{ID: "x", Kind: kind, Model: "sim"}); rec == nil || len(rec.Value) == 0 {
			t.Errorf("%s: no record", kind)
		}
	}
}

// TestSSEReaderResumes: a stream that breaks is reopened with
// Last-Event-ID, and answers keep coming.
func TestSSEReaderResumes(t *testing.T) {
	var mu sync.Mutex
	var lastIDs []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		lastIDs = append(lastIDs, r.Header.Get("Last-Event-ID"))
		n := len(lastIDs)
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(200)
		_, _ = io.WriteString(w, ": hello\n\n")
		w.(http.Flusher).Flush()
		if n > 2 {
			<-r.Context().Done()
			return
		}
		// One chunk and one result per connection, then the stream ends.
		id := fmt.Sprintf("r%d", n)
		fmt.Fprintf(w, "id: 0:%d\nevent: chunk\ndata: {\"request_id\":\"%s\",\"conversation_id\":\"c\",\"attempt\":1,\"metadata\":{\"loadtest_id\":\"%s\"},\"chunk\":{\"index\":0,\"delta\":\"x\"}}\n\n", 2*n, id, id)
		fmt.Fprintf(w, "id: 0:%d\nevent: result\ndata: {\"request_id\":\"%s\",\"conversation_id\":\"c\",\"attempt\":1,\"metadata\":{\"loadtest_id\":\"%s\"},\"final\":{\"content\":\"x\",\"timings\":{\"dispatched_at\":\"2026-01-01T00:00:00Z\",\"completed_at\":\"2026-01-01T00:00:00.2Z\"}}}\n\n", 2*n+1, id, id)
		fmt.Fprintf(w, "event: end\ndata: {\"reason\":\"shutdown\"}\n\n")
	}))
	defer srv.Close()
	r := newSSEReader(srv.URL, "")
	var amu sync.Mutex
	var got []Answer
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := r.Open(ctx, func(a Answer) { amu.Lock(); got = append(got, a); amu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	if err := r.Watch(ctx, "c"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		amu.Lock()
		n := len(got)
		amu.Unlock()
		if n >= 4 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.Close()
	amu.Lock()
	defer amu.Unlock()
	if len(got) != 4 || got[0].Kind != Chunk || got[1].Kind != Final || got[1].ModelTime != 200*time.Millisecond || got[3].ID != "r2" {
		t.Fatalf("answers %+v: want chunk and final of r1 and r2", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(lastIDs) < 2 || lastIDs[0] != "" || lastIDs[1] != "0:3" {
		t.Errorf("Last-Event-ID per connection %q, want \"\" then 0:3", lastIDs)
	}
	if r.Reconnects() < 1 {
		t.Error("no reconnect counted")
	}
}

func TestProcSampleOfSelf(t *testing.T) {
	cpu, rss, ok := procSample(selfPID())
	if !ok || rss <= 0 || cpu < 0 {
		t.Fatalf("cpu %v rss %d ok %v", cpu, rss, ok)
	}
	w := newProcWatch(func() map[string]int { return map[string]int{"self": selfPID()} }, time.Now())
	for range 3 {
		x := 0
		for i := range 5_000_000 {
			x += i
		}
		_ = x
		w.sample(time.Now().Add(time.Second))
	}
	rep, cores, mem := w.report(0, 10, 100)
	if rep["self"] == nil || rep["self"].MaxRSSMB <= 0 || len(mem["self"]) != 3 || len(cores["self"]) == 0 {
		t.Errorf("report %+v cores %v rss %v", rep["self"], cores, mem)
	}
}
