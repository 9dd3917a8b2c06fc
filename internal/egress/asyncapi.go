package egress

import (
	_ "embed"
	"net/http"
)

// asyncAPI is the AsyncAPI 3 document of the event streams (what a client
// receives), served at /asyncapi.yaml. asyncapi_test.go keeps it true to
// the events and the answer's fields.
//
//go:embed asyncapi.yaml
var asyncAPI []byte

func serveAsyncAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(asyncAPI) // the client may be gone
}
