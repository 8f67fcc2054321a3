package userattrs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Errors every store maps its own failures onto, so that callers test with
// errors.Is and never need to know which store they talk to.
var (
	// ErrUserNotFound: the store knows no user with that id.
	ErrUserNotFound = errors.New("user not found")
	// ErrPreconditionFailed: an If-Match precondition did not hold.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrUnavailable: the store is down, overloaded or did not answer in
	// time; the request may succeed if retried later.
	ErrUnavailable = errors.New("store unavailable")
	// ErrOverloaded: the instance already runs as many store operations
	// as it may; it is ErrUnavailable, answered at once rather than after
	// queueing until the timeout.
	ErrOverloaded = fmt.Errorf("%w: too many store operations at once", ErrUnavailable)
	// ErrOutboxFull: change events wait undelivered past the outbox's
	// bound; changes are refused, rather than acknowledged without their
	// events, until the sinks take them.
	ErrOutboxFull = fmt.Errorf("%w: the outbox of change events is full", ErrUnavailable)
)

// Violation is one member of a PUT body that breaks a rule.
type Violation struct {
	// Key is the member's name.
	Key string
	// Index is the offending element of an array value, -1 for the member
	// itself.
	Index int
	// Detail says what is wrong. It never quotes a value.
	Detail string
	// Reserved says that the member sets an attribute whose name is
	// reserved (Policy.Reserved), rather than breaking a limit or a type
	// rule.
	Reserved bool
}

// InvalidError is a body whose members break the attribute rules: bad keys,
// values of the wrong JSON type, or limits exceeded. It lists one violation
// per offending member, in the order they appear in the body.
type InvalidError struct {
	Violations []Violation
}

func (e *InvalidError) Error() string {
	return strconv.Itoa(len(e.Violations)) + " invalid attribute(s)"
}

// ReadOnlyError is a body that names attributes the policy does not let
// clients write: read-only or hidden ones.
type ReadOnlyError struct {
	// Keys are the offending attribute names, in body order.
	Keys []string
}

func (e *ReadOnlyError) Error() string {
	return "read-only attribute(s): " + strings.Join(e.Keys, ", ")
}
