package ingress

import (
	_ "embed"
	"net/http"
)

// openAPI is the OpenAPI 3 document of the HTTP API, served at
// /openapi.json. openapi_test.go keeps it true to the routes and types.
//
//go:embed openapi.json
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(openAPI) // the client may be gone
}
