package router

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/switchboard-llm/switchboard/internal/envelope"
	"github.com/switchboard-llm/switchboard/internal/modelsim"
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

const history = "switchboard.history"

// recorder wraps a backend and remembers the messages of every call, by
// the content of the call's last message.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	got  map[string][]string // last content -> "role:content" of every message
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	var body struct {
		Messages []struct{ Role, Content string }
	}
	if err := json.Unmarshal(b, &body); err == nil && len(body.Messages) > 0 {
		var msgs []string
		for _, m := range body.Messages {
			msgs = append(msgs, m.Role+":"+m.Content)
		}
		rc.mu.Lock()
		rc.got[body.Messages[len(body.Messages)-1].Content] = msgs
		rc.mu.Unlock()
	}
	r.Body = io.NopCloser(bytes.NewReader(b))
	rc.next.ServeHTTP(w, r)
}

// sent returns the roles of the messages of the call whose last message was
// last, and the contents of its user messages.
func (rc *recorder) sent(last string) (roles, users string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var rs, us []string
	for _, m := range rc.got[last] {
		role, content, _ := strings.Cut(m, ":")
		rs = append(rs, role)
		if role == "user" {
			us = append(us, content)
		}
	}
	return strings.Join(rs, ","), strings.Join(us, ",")
}

func memoryRequest(conv, tenant string, i int) *pb.Request {
	req := request(conv, i, i%2 == 1)
	req.Tenant, req.Memory = tenant, true
	req.Messages = []*pb.Message{{Role: "system", Content: "be brief"}, {Role: "user", Content: fmt.Sprintf("%s/%s turn %d", tenant, conv, i)}}
	return req
}

func (h *harness) historyTopic(partitions int32) {
	h.t.Helper()
	compact := "compact"
	if _, err := kadm.NewClient(h.client).CreateTopic(h.t.Context(), partitions, 1, map[string]*string{"cleanup.policy": &compact}, history); err != nil {
		h.t.Fatal(err)
	}
}

// TestMemoryRemembersAndRebuilds: a conversation's turns reach the model
// with the history before them; a second router (a restart: the history
// rebuilt from the topic) continues it; another tenant's conversation of
// the same ID has its own history; a forget record empties it.
func TestMemoryRemembersAndRebuilds(t *testing.T) {
	for _, eos := range []bool{false, true} {
		t.Run(fmt.Sprintf("exactly-once=%v", eos), func(t *testing.T) {
			h := newHarness(t)
			h.historyTopic(4)
			sim, err := modelsim.New(modelsim.Config{BaseLatency: time.Millisecond}, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			rc := &recorder{next: sim.Handler(), got: map[string][]string{}}
			base := h.backend(rc)
			mod := func(c *Config) { c.ExactlyOnce = eos }
			if eos {
				h.readCommitted()
			}
			stop := h.run(base, mod)
			h.produce(memoryRequest("c1", "a", 0))
			h.collect(1)
			h.produce(memoryRequest("c1", "a", 1), memoryRequest("c1", "b", 2))
			h.collect(2)
			check := func(last, wantRoles, wantUsers string) {
				t.Helper()
				roles, users := rc.sent(last)
				if roles != wantRoles || users != wantUsers {
					t.Errorf("call ending %q: got roles %s users %s; want %s and %s", last, roles, users, wantRoles, wantUsers)
				}
			}
			check("a/c1 turn 1", "system,user,assistant,user", "a/c1 turn 0,a/c1 turn 1")
			check("b/c1 turn 2", "system,user", "b/c1 turn 2") // another tenant: its own history
			if err := stop(); err != nil {
				t.Fatal(err)
			}

			stop = h.run(base, mod) // rebuilds from the history topic
			h.produce(memoryRequest("c1", "a", 3))
			h.collect(1)
			check("a/c1 turn 3", "system,user,assistant,user,assistant,user", "a/c1 turn 0,a/c1 turn 1,a/c1 turn 3")

			forget := &pb.Request{RequestId: "f", ConversationId: "c1", Tenant: "a", Lane: envelope.LaneInteractive, ForgetMemory: true}
			h.produce(forget, memoryRequest("c1", "a", 4), memoryRequest("c1", "b", 5))
			h.collect(2)
			check("a/c1 turn 4", "system,user", "a/c1 turn 4")
			check("b/c1 turn 5", "system,user,assistant,user", "b/c1 turn 2,b/c1 turn 5") // b's history stays
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			h.checkTombstone("interactive/a/c1", eos)
		})
	}
}

// readCommitted makes the harness read results as read_committed.
func (h *harness) readCommitted() {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.cluster.ListenAddrs()...),
		kgo.ConsumeTopics(results, deadletter), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(cl.Close)
	h.client = cl
}

// checkTombstone reads the history topic and wants a tombstone of key, on
// the partition of its conversation.
func (h *harness) checkTombstone(key string, readCommitted bool) {
	h.t.Helper()
	opts := []kgo.Opt{kgo.SeedBrokers(h.cluster.ListenAddrs()...), kgo.ConsumeTopics(history),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart())}
	if readCommitted {
		opts = append(opts, kgo.FetchIsolationLevel(kgo.ReadCommitted()))
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(h.t.Context(), 20*time.Second)
	defer cancel()
	var tomb *kgo.Record
	for ctx.Err() == nil && tomb == nil {
		cl.PollFetches(ctx).EachRecord(func(rec *kgo.Record) {
			if string(rec.Key) == key && rec.Value == nil {
				tomb = rec
			}
		})
	}
	_, _, conv, _ := envelope.ParseHistoryKey([]byte(key))
	switch {
	case tomb == nil:
		h.t.Errorf("no tombstone of %s", key)
	case tomb.Partition != envelope.Partition(conv, 4):
		h.t.Errorf("tombstone of %s on partition %d, its requests on %d", key, tomb.Partition, envelope.Partition(conv, 4))
	}
}

// TestCollectHistories: what a rebuild keeps from a history partition's
// records: the latest history of each key of the part's lane, none of a
// tombstoned key, nothing of the other lane, and undecodable records
// skipped.
func TestCollectHistories(t *testing.T) {
	hist := func(lane, tenant, conv, answer string) *kgo.Record {
		rec, err := envelope.EncodeHistory(history, 0, &pb.History{ConversationId: conv, Tenant: tenant, Lane: lane,
			Turns: []*pb.Turn{{RequestId: "r", Messages: []*pb.Message{{Role: "assistant", Content: answer}}}}})
		if err != nil {
			t.Fatal(err)
		}
		return rec
	}
	inter := &partitionMemory{lane: envelope.LaneInteractive}
	bat := &partitionMemory{lane: envelope.LaneBatch}
	parts := []*partitionMemory{inter, bat}
	got := map[*partitionMemory]map[string]*pb.History{inter: {}, bat: {}}
	for i, c := range []struct {
		rec *kgo.Record
		ok  bool
	}{
		{hist("interactive", "a", "c1", "first"), true},
		{hist("interactive", "a", "c1", "second"), true},
		{hist("interactive", "b", "c1", "b's"), true},
		{hist("batch", "a", "c1", "batch"), true},
		{hist("interactive", "a", "c2", "gone"), true},
		{envelope.HistoryTombstone(history, 0, "interactive", "a", "c2"), true},
		{&kgo.Record{Key: []byte("interactive/a/c3"), Value: []byte{0xff}}, false},
		{&kgo.Record{Key: []byte("nonsense"), Value: []byte{}}, false},
	} {
		if ok := collect(c.rec, parts, got); ok != c.ok {
			t.Errorf("record %d: collect = %v, want %v", i, ok, c.ok)
		}
	}
	answer := func(pm *partitionMemory, key string) string {
		h := got[pm][key]
		if h == nil {
			return "none"
		}
		return h.GetTurns()[0].GetMessages()[0].GetContent()
	}
	for _, c := range []struct {
		pm        *partitionMemory
		key, want string
	}{
		{inter, "interactive/a/c1", "second"},
		{inter, "interactive/b/c1", "b's"},
		{inter, "interactive/a/c2", "none"},
		{inter, "batch/a/c1", "none"},
		{bat, "batch/a/c1", "batch"},
		{bat, "interactive/a/c1", "none"},
	} {
		if got := answer(c.pm, c.key); got != c.want {
			t.Errorf("%s lane, %s: got %s, want %s", c.pm.lane, c.key, got, c.want)
		}
	}
	if n := len(got[inter]) + len(got[bat]); n != 3 {
		t.Errorf("%d histories kept, want 3", n)
	}
}
