// Package httperr maps error kinds to HTTP status codes, in exactly one
// place. A 5xx answer never carries internal details.
package httperr

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/corral-ci/corral/internal/corral"
)

// Status returns the HTTP status for an error kind.
func Status(err error) int {
	switch {
	case err == nil:
		return http.StatusOK
	case errors.Is(err, corral.ErrUnauthorized):
		return http.StatusUnauthorized
	case errors.Is(err, corral.ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, corral.ErrTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, corral.ErrBadInput):
		return http.StatusBadRequest
	case errors.Is(err, corral.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, corral.ErrConflict), errors.Is(err, corral.ErrBusy):
		return http.StatusConflict
	case errors.Is(err, corral.ErrLimit), errors.Is(err, corral.ErrRateLimited):
		return http.StatusTooManyRequests
	case errors.Is(err, corral.ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

// Body is corral's one error body: {"error": "...", "request_id": "..."}.
// request_id is the answer's X-Request-Id (set by internal/reqid before
// any handler runs), so that a caller can quote it and an operator find
// the request's log lines.
type Body struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id,omitempty"`
}

// Write answers with the error's status and a JSON body. For 4xx the body
// says what was wrong; for 5xx only that the server failed.
func Write(w http.ResponseWriter, err error) {
	code := Status(err)
	msg := err.Error()
	if code >= 500 {
		msg = http.StatusText(code)
	}
	WriteJSON(w, code, Body{Error: msg, RequestID: w.Header().Get("X-Request-Id")})
}

// WriteJSON answers with code and v as JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
