package envelope

import (
	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

// Answer is what a client sees of a result record (egress streams and
// webhooks): the answer without the record's internal fields (tenant, run,
// webhook target); the final result's backend and timings only when
// showBackend and showTimings say the client's tenant may see them.
func Answer(res *pb.Result, showBackend, showTimings bool) *pb.Answer {
	a := &pb.Answer{RequestId: res.GetRequestId(), ConversationId: res.GetConversationId(),
		Attempt: res.GetAttempt(), Metadata: res.GetMetadata()}
	switch b := res.GetBody().(type) {
	case *pb.Result_Chunk:
		a.Body = &pb.Answer_Chunk{Chunk: b.Chunk}
	case *pb.Result_Final:
		f := b.Final
		if (!showBackend && f.GetBackend() != "") || (!showTimings && f.GetTimings() != nil) {
			shown := &pb.Final{Content: f.GetContent(), FinishReason: f.GetFinishReason(), Usage: f.GetUsage()}
			if showBackend {
				shown.Backend = f.GetBackend()
			}
			if showTimings {
				shown.Timings = f.GetTimings()
			}
			f = shown
		}
		a.Body = &pb.Answer_Final{Final: f}
	case *pb.Result_Error:
		a.Body = &pb.Answer_Error{Error: b.Error}
	}
	return a
}
