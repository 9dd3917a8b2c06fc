package modelsim

import (
	"encoding/json"
	"net/http"
)

// apiError is an error answered in OpenAI's format,
// {"error": {"message", "type", "code"}}.
type apiError struct {
	Status  int    `json:"-"`
	Message string `json:"message"`
	Type    string `json:"type"`
	Code    string `json:"code"`
}

// badRequest returns a 400 invalid_request_error.

// typeInvalidRequest is OpenAI's error type of a request the server refuses.
const typeInvalidRequest = "invalid_request_error"

func badRequest(code, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: typeInvalidRequest, Code: code, Message: msg}
}

// writeError answers e as JSON with its status.
func writeError(w http.ResponseWriter, e *apiError) {
	writeJSON(w, e.Status, struct {
		Error *apiError `json:"error"`
	}{e})
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // only our own types are written; they always marshal
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}
