package server

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
)

// The stable error codes of the API and their fixed titles.
const (
	codeInvalidJSON            = "invalid-json"
	codeInvalidBody            = "invalid-body"
	codeMissingToken           = "missing-token"
	codeInvalidToken           = "invalid-token"
	codeMissingLinkedIdentity  = "missing-linked-identity"
	codeInsufficientScope      = "insufficient-scope"
	codeAttributeReadOnly      = "attribute-read-only"
	codeNotFound               = "not-found"
	codeMethodNotAllowed       = "method-not-allowed"
	codePreconditionFailed     = "precondition-failed"
	codeBodyTooLarge           = "body-too-large"
	codeUnsupportedMediaType   = "unsupported-media-type"
	codeRequestTimeout         = "request-timeout"
	codeRateLimited            = "rate-limited"
	codeInvalidAttribute       = "invalid-attribute"
	codeAttributeReserved      = "attribute-reserved"
	codeInternalError          = "internal-error"
	codeStoreUnavailable       = "store-unavailable"
	codeOutboxFull             = "outbox-full"
	codeServiceAccountRequired = "service-account-required"
	codeUserNotFound           = "user-not-found"
	codeHistoryNotKept         = "history-not-kept"
	codeInvalidParameter       = "invalid-parameter"
	codeEventNotFound          = "event-not-found"
	codeEventsOff              = "events-off"
)

var titles = map[string]string{
	codeInvalidJSON:            "Request body is not valid JSON",
	codeInvalidBody:            "Request body is not a valid attributes object",
	codeMissingToken:           "Missing bearer token",
	codeInvalidToken:           "Invalid bearer token",
	codeMissingLinkedIdentity:  "Missing linked identity for authorized access",
	codeInsufficientScope:      "Insufficient scope",
	codeAttributeReadOnly:      "Attribute is read-only",
	codeNotFound:               "Resource not found",
	codeMethodNotAllowed:       "Method not allowed",
	codePreconditionFailed:     "Precondition failed",
	codeBodyTooLarge:           "Request body too large",
	codeUnsupportedMediaType:   "Unsupported media type",
	codeRequestTimeout:         "Request timeout",
	codeRateLimited:            "Too many requests",
	codeInvalidAttribute:       "Invalid attribute",
	codeAttributeReserved:      "Attribute name is reserved",
	codeInternalError:          "Internal server error",
	codeStoreUnavailable:       "Service unavailable",
	codeOutboxFull:             "Change events undelivered",
	codeServiceAccountRequired: "Service account required",
	codeUserNotFound:           "User not found",
	codeHistoryNotKept:         "History not kept",
	codeInvalidParameter:       "Invalid query parameter",
	codeEventNotFound:          "Parked event not found",
	codeEventsOff:              "Change events off",
}

// retryAfterSeconds is what a 503 tells clients to wait before retrying.
const retryAfterSeconds = "5"

// maxErrors bounds how many errors one response lists, so that a body of
// thousands of bad members cannot make a response many times its size:
// as many as the domain checks of one body.
const maxErrors = userattrs.MaxViolations

// apiError is one JSON:API error object.
type apiError struct {
	ID     string  `json:"id"`
	Status string  `json:"status"`
	Code   string  `json:"code"`
	Title  string  `json:"title"`
	Detail string  `json:"detail,omitempty"`
	Source *source `json:"source,omitempty"`
	status int
}

type source struct {
	Pointer   *string `json:"pointer,omitempty"`
	Parameter string  `json:"parameter,omitempty"`
}

// newError returns an error with the fixed title of code.
func newError(status int, code, detail string) apiError {
	return apiError{status: status, Status: strconv.Itoa(status), Code: code, Title: titles[code], Detail: detail}
}

func (e apiError) at(pointer string) apiError {
	e.Source = &source{Pointer: &pointer}
	return e
}

// writeErrors writes a JSON:API error document. All errors share the status
// of the first; each carries the request id.
func writeErrors(w http.ResponseWriter, r *http.Request, errs ...apiError) {
	id := requestID(r.Context())
	if len(errs) > maxErrors {
		errs = errs[:maxErrors]
	}
	for i := range errs {
		errs[i].ID = id
	}
	if state, ok := r.Context().Value(stateKey{}).(*requestState); ok {
		state.code = errs[0].Code
	}
	h := w.Header()
	h.Set("Content-Type", "application/vnd.api+json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	delete(h, etagHeader)
	if errs[0].status == http.StatusServiceUnavailable && h.Get("Retry-After") == "" {
		h.Set("Retry-After", retryAfterSeconds)
	}
	w.WriteHeader(errs[0].status)
	json.NewEncoder(w).Encode(struct {
		Errors []apiError `json:"errors"`
	}{errs})
}

// writeError turns an error from the domain or auth into its response: the
// one table from errors to statuses. Unexpected errors are logged, because
// only they need an operator; their text never reaches the client.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var invalid *userattrs.InvalidError
	var readOnly *userattrs.ReadOnlyError
	switch {
	case errors.As(err, &invalid):
		// Only what the response lists is built: a body of thousands of
		// bad members must not cost thousands of pointers.
		violations := invalid.Violations[:min(len(invalid.Violations), maxErrors)]
		errs := make([]apiError, 0, len(violations))
		for _, v := range violations {
			code := codeInvalidAttribute
			if v.Reserved {
				code = codeAttributeReserved
			}
			errs = append(errs, newError(http.StatusUnprocessableEntity, code, v.Detail).at(pointer(v.Key, v.Index)))
		}
		writeErrors(w, r, errs...)
	case errors.As(err, &readOnly):
		errs := make([]apiError, 0, len(readOnly.Keys))
		for _, k := range readOnly.Keys {
			errs = append(errs, newError(http.StatusForbidden, codeAttributeReadOnly,
				"clients may not write this attribute; nothing was changed").at(pointer(k, -1)))
		}
		writeErrors(w, r, errs...)
	case errors.Is(err, userattrs.ErrPreconditionFailed):
		writeErrors(w, r, newError(http.StatusPreconditionFailed, codePreconditionFailed,
			"the attributes changed since the entity tag in If-Match was issued; read them again"))
	case errors.Is(err, userattrs.ErrUserNotFound) && r.PathValue("id") != "":
		writeErrors(w, r, newError(http.StatusNotFound, codeUserNotFound, "the store knows no user with this id"))
	case errors.Is(err, userattrs.ErrUserNotFound):
		writeErrors(w, r, newError(http.StatusNotFound, codeNotFound, "the user of this token does not exist"))
	case errors.Is(err, userattrs.ErrBadCursor):
		e := newError(http.StatusBadRequest, codeInvalidParameter, "not a cursor this service gave out for this user's history")
		e.Source = &source{Parameter: "page[cursor]"}
		writeErrors(w, r, e)
	case errors.Is(err, userattrs.ErrNoHistory):
		writeErrors(w, r, newError(http.StatusNotImplemented, codeHistoryNotKept,
			"this store keeps no history of changes: none is recorded, so none can be listed"))
	case errors.Is(err, auth.ErrMisconfigured):
		// The operator's to fix, and retrying will not help.
		logFrom(r.Context()).Error("token checks misconfigured", "error", err.Error())
		writeInternalError(w, r)
	case errors.Is(err, userattrs.ErrOverloaded):
		// Shed at once, and counted by the request metrics: a warning per
		// request would add to the load.
		w.Header().Set("Retry-After", "1")
		writeErrors(w, r, newError(http.StatusServiceUnavailable, codeStoreUnavailable,
			"this instance is running as many store operations as it may; retry shortly"))
	case errors.Is(err, userattrs.ErrOutboxFull):
		// Counted by the request metrics and the outbox gauges; readiness
		// logs why.
		writeErrors(w, r, newError(http.StatusServiceUnavailable, codeOutboxFull,
			"changes are refused while the events of earlier changes wait undelivered past the service's bound; nothing was changed; retry later"))
	case errors.Is(err, userattrs.ErrUnavailable), errors.Is(err, auth.ErrUnavailable):
		logFrom(r.Context()).Warn("dependency unavailable", "error", err.Error())
		writeErrors(w, r, newError(http.StatusServiceUnavailable, codeStoreUnavailable,
			"a backend of this service is unavailable; retry later"))
	default:
		var p *userattrs.PanicError
		if errors.As(err, &p) {
			logFrom(r.Context()).Error("panic", "error", err.Error(), "stack", string(p.Stack))
		} else {
			logFrom(r.Context()).Error("internal error", "error", err.Error())
		}
		writeInternalError(w, r)
	}
}

// pointerEscaper escapes a member name for a JSON pointer (RFC 6901).
var pointerEscaper = strings.NewReplacer("~", "~0", "/", "~1")

// pointer returns the JSON pointer to the member named key of the
// top-level object, and to element index of it when index >= 0.
func pointer(key string, index int) string {
	p := "/" + pointerEscaper.Replace(key)
	if index >= 0 {
		p += "/" + strconv.Itoa(index)
	}
	return p
}

// writeInternalError answers 501, as the published contract names its
// internal server error.
func writeInternalError(w http.ResponseWriter, r *http.Request) {
	writeErrors(w, r, newError(http.StatusNotImplemented, codeInternalError, "an unexpected error occurred"))
}
