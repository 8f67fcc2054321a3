package client

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Error is an error the API answered: its status, its stable code (such
// as "precondition-failed"), and the Request-Id to quote to the service's
// operators. Test for a kind of error with errors.Is and the Err values.
type Error struct {
	Status    int
	Code      string
	Title     string
	Detail    string
	RequestID string
	// Pointer names the member of the body at fault, when one is.
	Pointer string
	// RetryAfter is how long the service asked the client to wait.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	msg := fmt.Sprintf("userattrs: %d %s", e.Status, e.Code)
	if e.Detail != "" {
		msg += ": " + e.Detail
	}
	if e.Pointer != "" {
		msg += " (at " + e.Pointer + ")"
	}
	if e.RequestID != "" {
		msg += " [request " + e.RequestID + "]"
	}
	return msg
}

// Is matches the Err values by code.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code != "" && t.Code == e.Code
}

// Errors to test for with errors.Is.
var (
	ErrPreconditionFailed = &Error{Code: "precondition-failed"}
	ErrUserNotFound       = &Error{Code: "user-not-found"}
	ErrNotFound           = &Error{Code: "not-found"}
	ErrInvalidAttribute   = &Error{Code: "invalid-attribute"}
	ErrReadOnly           = &Error{Code: "attribute-read-only"}
	ErrUnavailable        = &Error{Code: "store-unavailable"}
	ErrRateLimited        = &Error{Code: "rate-limited"}
	ErrHistoryNotKept     = &Error{Code: "history-not-kept"}
)

// readError turns a response that is not a success into an *Error, from
// its JSON:API error document where it has one, and closes it.
func readError(res *http.Response) *Error {
	defer res.Body.Close()
	e := &Error{Status: res.StatusCode, RequestID: res.Header.Get("Request-Id"), RetryAfter: retryAfter(res.Header)}
	var doc struct {
		Errors []struct {
			Code, Title, Detail string
			Source              struct{ Pointer string }
		}
	}
	body, _ := io.ReadAll(io.LimitReader(res.Body, 64<<10))
	if json.Unmarshal(body, &doc) == nil && len(doc.Errors) > 0 {
		first := doc.Errors[0]
		e.Code, e.Title, e.Detail, e.Pointer = first.Code, first.Title, first.Detail, first.Source.Pointer
	} else {
		e.Title = http.StatusText(res.StatusCode)
	}
	return e
}
