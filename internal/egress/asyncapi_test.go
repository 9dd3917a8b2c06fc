package egress

import (
	"io"
	"net/http"
	"slices"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/reflect/protoreflect"

	pb "github.com/switchboard-llm/switchboard/proto/switchboard/v1"
)

type schema struct {
	Properties map[string]schema `yaml:"properties"`
	Enum       []string          `yaml:"enum"`
}

func loadAsyncAPI(t *testing.T) (doc struct {
	Components struct {
		Schemas map[string]schema `yaml:"schemas"`
	} `yaml:"components"`
	Channels map[string]struct {
		Messages map[string]any `yaml:"messages"`
	} `yaml:"channels"`
}) {
	t.Helper()
	if err := yaml.Unmarshal(asyncAPI, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// fieldNames are the JSON (proto) names of m's fields and oneof members.
func fieldNames(m protoreflect.MessageDescriptor) []string {
	var out []string
	for i := range m.Fields().Len() {
		out = append(out, string(m.Fields().Get(i).Name()))
	}
	slices.Sort(out)
	return out
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestAsyncAPIMatchesTheCode: the document names every SSE event the
// streams send and every field of the messages a client receives.
func TestAsyncAPIMatchesTheCode(t *testing.T) {
	doc := loadAsyncAPI(t)
	sse := keys(doc.Channels["events"].Messages)
	if want := []string{"chunk", "end", "error", "restart", "result"}; !slices.Equal(sse, want) {
		t.Errorf("SSE events %v, want %v", sse, want)
	}
	s := doc.Components.Schemas
	for name, m := range map[string]protoreflect.MessageDescriptor{
		"Answer":  (&pb.Answer{}).ProtoReflect().Descriptor(),
		"Restart": (&pb.Restart{}).ProtoReflect().Descriptor(),
	} {
		if got, want := keys(s[name].Properties), fieldNames(m); !slices.Equal(got, want) {
			t.Errorf("%s properties %v, want the fields %v", name, got, want)
		}
	}
	a := s["Answer"].Properties
	for prop, m := range map[string]protoreflect.MessageDescriptor{
		"chunk": (&pb.Chunk{}).ProtoReflect().Descriptor(),
		"final": (&pb.Final{}).ProtoReflect().Descriptor(),
		"error": (&pb.Error{}).ProtoReflect().Descriptor(),
	} {
		if got, want := keys(a[prop].Properties), fieldNames(m); !slices.Equal(got, want) {
			t.Errorf("Answer.%s properties %v, want the fields %v", prop, got, want)
		}
	}
	reasons := s["End"].Properties["reason"].Enum
	slices.Sort(reasons)
	if want := []string{endDone, endOverflow, endReplayFailed, endRevoked, endShutdown}; !slices.Equal(reasons, want) {
		t.Errorf("end reasons %v, want %v", reasons, want)
	}
}

func TestAsyncAPIServed(t *testing.T) {
	h := newHarness(t)
	eg := h.start(nil)
	resp, err := http.Get(eg.url + "/asyncapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || string(b) != string(asyncAPI) {
		t.Errorf("GET /asyncapi.yaml: %d, %d bytes", resp.StatusCode, len(b))
	}
	resp, err = http.Get(eg.url + "/nothing")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || resp.Header.Get("Content-Type") != "application/json" {
		t.Errorf("GET /nothing: %d %s, want a JSON 404", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}
