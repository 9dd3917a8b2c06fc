package envelope

import (
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

func TestAnswerHidesWhatIsNotShown(t *testing.T) {
	res := &pb.Result{RequestId: "r", ConversationId: "c", Attempt: 2, Tenant: "t", RunId: "run", WebhookUrl: "https://h/x",
		Metadata: map[string]string{"k": "v"},
		Body:     &pb.Result_Final{Final: &pb.Final{Content: "hi", Backend: "b1", Timings: &pb.Timings{CompletedAt: timestamppb.Now()}}}}
	for _, tc := range []struct{ backend, timings bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
		a := Answer(res, tc.backend, tc.timings)
		f := a.GetFinal()
		if a.GetRequestId() != "r" || a.GetConversationId() != "c" || a.GetAttempt() != 2 || a.GetMetadata()["k"] != "v" || f.GetContent() != "hi" {
			t.Errorf("%+v: answer %v lost the answer", tc, a)
		}
		if (f.GetBackend() != "") != tc.backend || (f.GetTimings() != nil) != tc.timings {
			t.Errorf("%+v: final %v", tc, f)
		}
	}
	if res.GetFinal().GetBackend() != "b1" || res.GetFinal().GetTimings() == nil {
		t.Error("Answer changed the record")
	}
}
