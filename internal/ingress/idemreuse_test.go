package ingress

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// countRecords returns how many records both requests topics hold.
func countRecords(t *testing.T, cluster *kfake.Cluster) int {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	n := 0
	for _, topic := range []string{"switchboard.requests.interactive", "switchboard.requests.batch"} {
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		if err != nil {
			t.Fatal(err)
		}
		ends.Each(func(o kadm.ListedOffset) { n += int(o.Offset) })
	}
	return n
}

func TestIdempotencyKeyReusedForAnotherRequest(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, nil)
	send := func(conv, content string) (int, []byte) {
		res, b := doWith(t, in.Handler(), "POST", "/v1/conversations/"+conv+"/messages", "application/json",
			`{"model":"sim","messages":[{"role":"user","content":"`+content+`"}]}`,
			map[string]string{"Authorization": "Bearer " + devKey, "Idempotency-Key": "k-1"})
		return res.StatusCode, b
	}
	if st, b := send("c1", "hello"); st != http.StatusAccepted {
		t.Fatalf("first: %d %s", st, b)
	}
	if st, b := send("c1", "hello"); st != http.StatusAccepted {
		t.Fatalf("repeat: %d %s", st, b)
	}
	for _, tc := range []struct{ conv, content string }{{"c1", "another"}, {"c2", "hello"}} {
		st, b := send(tc.conv, tc.content)
		if e := decodeError(t, b); st != http.StatusUnprocessableEntity || e.Code != "idempotency_key_reused" {
			t.Errorf("same key, %s %q: %d %s, want 422 idempotency_key_reused", tc.conv, tc.content, st, b)
		}
	}
	if n := countRecords(t, cluster); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

func TestBatchIdempotency(t *testing.T) {
	cluster := newCluster(t)
	in := newIngress(t, cluster, nil)
	batch := func(key, body string) (int, batchAnswer, []byte) {
		h := map[string]string{"Authorization": "Bearer " + devKey}
		if key != "" {
			h["Idempotency-Key"] = key
		}
		res, b := doWith(t, in.Handler(), "POST", "/v1/messages:batch", "application/json", body, h)
		var a batchAnswer
		if err := json.Unmarshal(b, &a); err != nil {
			t.Fatalf("batch answer %s: %v", b, err)
		}
		return res.StatusCode, a, b
	}
	const two = `{"requests":[
		{"conversation_id":"bi1","model":"sim","messages":[{"role":"user","content":"one"}]},
		{"conversation_id":"bi2","model":"sim","messages":[{"role":"user","content":"two"}]}]}`
	st, first, b := batch("batch-1", two)
	if st != http.StatusOK || first.Accepted != 2 {
		t.Fatalf("first batch: %d %s", st, b)
	}
	st, again, b := batch("batch-1", two)
	if st != http.StatusOK || again.Accepted != 2 || *again.Results[0].Ack != *first.Results[0].Ack || *again.Results[1].Ack != *first.Results[1].Ack {
		t.Fatalf("repeated batch: %d %s, want the first acks", st, b)
	}
	if n := countRecords(t, cluster); n != 2 {
		t.Errorf("after a repeated batch: %d records, want 2", n)
	}
	st, _, b = batch("batch-1", `{"requests":[{"conversation_id":"bi1","model":"sim","messages":[{"role":"user","content":"changed"}]}]}`)
	if e := decodeError(t, b); st != http.StatusUnprocessableEntity || e.Code != "idempotency_key_reused" {
		t.Errorf("same batch key, another batch: %d %s, want 422", st, b)
	}

	// Item keys: the same key twice is one request; with another body, 422.
	st, items, b := batch("", `{"requests":[
		{"conversation_id":"bi3","idempotency_key":"i-1","model":"sim","messages":[{"role":"user","content":"x"}]},
		{"conversation_id":"bi3","idempotency_key":"i-1","model":"sim","messages":[{"role":"user","content":"x"}]},
		{"conversation_id":"bi4","idempotency_key":"i-1","model":"sim","messages":[{"role":"user","content":"y"}]}]}`)
	if st != http.StatusOK || items.Results[0].Ack == nil || items.Results[1].Ack == nil || *items.Results[1].Ack != *items.Results[0].Ack {
		t.Fatalf("repeated item key: %d %s, want the same ack twice", st, b)
	}
	if r := items.Results[2]; r.Status != http.StatusUnprocessableEntity || r.Error.Code != "idempotency_key_reused" {
		t.Errorf("item key with another request: %+v, want 422", r)
	}
	if n := countRecords(t, cluster); n != 3 {
		t.Errorf("%d records, want 3", n)
	}
}
