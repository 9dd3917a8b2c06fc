package modelsim

import (
	"fmt"
	"net/http"
	"testing"
)

func TestDebugRequestsShowsWhatWasSent(t *testing.T) {
	ts := newTestServer(t, Config{})
	post(t, ts, "/v1/chat/completions", `{"model":"sim","messages":[{"role":"system","content":"s"},{"role":"user","content":"first"}]}`)
	post(t, ts, "/v1/chat/completions", `{"model":"sim","messages":[{"role":"user","content":"first"},{"role":"assistant","content":"a"},{"role":"user","content":"second"}]}`)
	get := func(query string) []receivedRequest {
		t.Helper()
		resp, err := ts.Client().Get(ts.URL + "/debug/requests" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %d", resp.StatusCode)
		}
		return decodeBody[map[string][]receivedRequest](t, resp)["requests"]
	}
	all := get("")
	if len(all) != 2 || len(all[0].Messages) != 2 || len(all[1].Messages) != 3 || all[1].Messages[1] != (receivedMessage{"assistant", "a"}) {
		t.Fatalf("got %+v, want both requests' messages, oldest first", all)
	}
	if got := get("?last=second"); len(got) != 1 || len(got[0].Messages) != 3 {
		t.Errorf("last=second: got %+v, want the second request", got)
	}
}

func TestReceivedKeepsTheNewest(t *testing.T) {
	var r received
	for i := range receivedMax + 10 {
		r.add(chatRequest{Model: fmt.Sprint(i), Messages: []message{{Role: "user", Content: fmt.Sprint(i)}}})
	}
	got := r.list("")
	if len(got) != receivedMax || got[0].Model != "10" || got[len(got)-1].Model != fmt.Sprint(receivedMax+9) {
		t.Errorf("got %d requests from %s to %s, want %d from 10 to %d", len(got), got[0].Model, got[len(got)-1].Model, receivedMax, receivedMax+9)
	}
}
