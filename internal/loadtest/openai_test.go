package loadtest

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

func TestOpenAIDriver(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/chat/completions" || r.Header.Get("Authorization") != "Bearer k" || r.Header.Get("X-Switchboard-Conversation-Id") == "" {
			http.Error(w, "bad call", 500)
			return
		}
		switch r.Header.Get("X-Switchboard-Conversation-Id") {
		case "plain":
			_, _ = w.Write([]byte(`{"id":"chatcmpl-r1","object":"chat.completion","choices":[{"message":{"content":"hi"}}]}`))
		case "stream":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = w.Write([]byte("data: {\"id\":\"chatcmpl-r2\",\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"\"}}]}\n\n" +
				"data: {\"id\":\"chatcmpl-r2\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n" +
				"data: {\"id\":\"chatcmpl-r2\",\"choices\":[{\"delta\":{\"content\":\"b\"}}]}\n\n" +
				"data: {\"id\":\"chatcmpl-r2\",\"choices\":[],\"usage\":{\"total_tokens\":3}}\n\n" +
				"data: [DONE]\n\n"))
		case "failed":
			w.WriteHeader(502)
			_, _ = w.Write([]byte(`{"error":{"message":"m","type":"server_error","param":null,"code":"backend_error"}}`))
		case "limited":
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(429)
			_, _ = w.Write([]byte(`{"error":{"message":"m","type":"rate_limit_error","param":null,"code":"rate_limited"}}`))
		case "cut":
			_, _ = w.Write([]byte("data: {\"id\":\"chatcmpl-r3\",\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n"))
		}
	}))
	defer srv.Close()
	d := newOpenAIDriver(srv.URL, "k", 5*time.Second)
	defer d.Close()
	var mu sync.Mutex
	var got []Answer
	if err := d.Open(context.Background(), func(a Answer) { mu.Lock(); got = append(got, a); mu.Unlock() }); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cases := []struct {
		conv    string
		stream  bool
		errCode string
		kinds   []AnswerKind
	}{
		{"plain", false, "", []AnswerKind{Final}},
		{"stream", true, "", []AnswerKind{Chunk, Chunk, Final}},
		{"failed", false, "", []AnswerKind{Failed}},
		{"limited", false, "http_429_rate_limited", nil},
		{"cut", true, "openai_stream_cut", []AnswerKind{Chunk}},
	}
	for _, tc := range cases {
		got = nil
		err := d.Send(ctx, Message{ID: "id-" + tc.conv, Conversation: tc.conv, Lane: "interactive", Model: "sim", Stream: tc.stream, Content: "x"})
		var se *SendError
		switch {
		case tc.errCode == "" && err != nil:
			t.Errorf("%s: %v", tc.conv, err)
		case tc.errCode != "" && (!errors.As(err, &se) || se.Code != tc.errCode):
			t.Errorf("%s: error %v, want code %s", tc.conv, err, tc.errCode)
		}
		var kinds []AnswerKind
		for i, a := range got {
			kinds = append(kinds, a.Kind)
			if a.ID != "id-"+tc.conv || a.Conversation != tc.conv || a.At.IsZero() || (a.Kind == Chunk && a.ChunkIndex != int32(i)) {
				t.Errorf("%s: answer %+v", tc.conv, a)
			}
		}
		if len(kinds) != len(tc.kinds) || (len(kinds) > 0 && kinds[len(kinds)-1] != tc.kinds[len(tc.kinds)-1]) {
			t.Errorf("%s: answers %v, want %v", tc.conv, kinds, tc.kinds)
		}
	}
	if err := d.Send(ctx, Message{ID: "b", Conversation: "c", Lane: "batch", Model: "sim"}); err == nil {
		t.Error("a batch message was sent through the OpenAI API")
	}
}
