package userattrs

import (
	"context"
	"fmt"
	"reflect"
	"runtime/debug"
)

// Store keeps the attributes of users. This is the whole contract a store
// keeps; the conformance suite (store/conformance) checks every clause
// against every store, split by the capabilities the store declares.
//
// Reads:
//   - Get returns every attribute of the user, hidden ones included; a user
//     without attributes has an empty, non-nil map. The caller may keep the
//     map but must not change it.
//   - A Get that starts after an Update of the same user returned nil, on
//     any store value (any instance) sharing the backend, sees that update
//     or a later one.
//
// Updates:
//   - Update replaces the attributes of the user with what update returns,
//     given the current ones, atomically: no other update of the same user
//     comes between the read and the write, through this store value and,
//     where Capabilities.SharedAcrossInstances, through every other store
//     value on the same backend (every instance of the service).
//   - update may be called several times (stores that retry on a conflict
//     do, and stores that first try the attributes they last saw), and must
//     neither keep nor change its argument. Only a call given the current
//     attributes counts: its result is what is written, its error is what
//     Update returns, as it is. A panic in update aborts the change too and
//     is returned as a *PanicError, never taking down the process or
//     another update.
//   - When Update returns nil the change is made, and durable where
//     Capabilities.Durable: it survives a crash of the process and of the
//     machine.
//   - When the context ends before the change is made, Update returns an
//     error wrapping the context's, and the change is never made: an
//     update whose caller gave up is not applied later. Where the backend
//     cannot take back a write already sent (a commit or a request in
//     flight), Update waits for its outcome and reports it as it is,
//     whatever the context says; the caller bounds its own wait (Service
//     does).
//
// Errors:
//   - Every failure maps onto the shared errors, tested with errors.Is:
//     ErrUserNotFound for a user the store does not know (only stores with
//     Capabilities.KnownUsers; the others create users on first write),
//     ErrUnavailable when the backend is down, overloaded, slow, or the
//     request ended, *InvalidError for a value the backend cannot keep.
//     Anything else is a bug, reported as an internal error.
//
// Lifetime:
//   - Ping checks that the store can serve requests now.
//   - Close waits for updates in progress, then releases the store; after
//     Close, every method returns ErrClosed and none panics. Close may be
//     called more than once.
type Store interface {
	Get(ctx context.Context, user string) (Attributes, error)
	Update(ctx context.Context, user string, update func(current Attributes) (Attributes, error)) error
	Ping(ctx context.Context) error
	Close() error
	// Capabilities says what the store can promise, which the service and
	// the conformance suite read instead of probing.
	Capabilities() Capabilities
}

// Capabilities are what a store declares about itself.
type Capabilities struct {
	// SharedAcrossInstances: several service instances may use the store at
	// once, and Update stays atomic and conditional across all of them.
	SharedAcrossInstances bool
	// ExternalWriters: something besides this service changes the
	// attributes (Keycloak's own consoles): what an instance read may
	// change without it knowing, so a read cache must expire.
	ExternalWriters bool
	// Durable: a nil Update survives a crash. The in-memory store is not.
	Durable bool
	// KnownUsers: the store knows its users, and unknown ones are
	// ErrUserNotFound; the others create a user on first write.
	KnownUsers bool
	// NoEmptyValues: the backend cannot keep an empty string value, so
	// Update refuses one with an *InvalidError and changes nothing.
	NoEmptyValues bool
	// NoNULValues: the backend (or a database behind it) cannot keep a NUL
	// character in a value; Update refuses one likewise.
	NoNULValues bool
	// OwnedAttributes are glob patterns of attribute names the backend
	// itself owns (Keycloak's profile fields and federation attributes):
	// clients neither see nor write them.
	OwnedAttributes []string
	// CallerViews: what Get returns, and what Update lets through, depend
	// on the Caller the context carries (Keycloak, whose realm's user
	// profile gives users and administrators different rights). The read
	// cache then keeps users' views only.
	CallerViews bool
	// History: the store records every change in the transaction that
	// makes it, and implements History.
	History bool
	// Outbox: the store was opened with events on, writes each change's
	// event in the transaction that makes it, and implements Outbox.
	Outbox bool
}

// LinkSource is implemented by stores that know at which third-party
// identity providers a user has linked identities (Keycloak's federated
// identities).
type LinkSource interface {
	LinkedProviders(ctx context.Context, user string) ([]string, error)
}

// PanicError is a panic inside an updater or a store, turned into an error
// of its request: the process and the other requests go on.
type PanicError struct {
	// Stack is where it happened; the panic's value is left out, since it
	// may hold request data.
	Stack []byte
}

func (e *PanicError) Error() string { return "panic in a store update" }

// Next runs an updater of Store.Update on current and reports whether the
// attributes it returns differ, so that stores skip writes that change
// nothing: an updater that changes nothing may say so in O(1) by returning
// current itself. A panic in update is returned as a *PanicError.
func Next(current Attributes, update func(Attributes) (Attributes, error)) (next Attributes, changed bool, err error) {
	defer RecoverPanic(&err)
	next, err = update(current)
	if err != nil {
		return nil, false, err
	}
	return next, !Same(next, current) && !next.Equal(current), nil
}

// Same reports whether a and b are one map, not two equal ones: what a
// store that keeps the attributes it last saw checks them against.
func Same(a, b Attributes) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// RecoverPanic turns a panic into a *PanicError in *err, for stores that
// run updates where no caller would recover them. Call it deferred.
func RecoverPanic(err *error) {
	if v := recover(); v != nil {
		*err = &PanicError{Stack: debug.Stack()}
	}
}

// ErrClosed is what a closed store answers: the service is shutting down,
// which clients see as unavailable.
var ErrClosed = fmt.Errorf("%w: the store is closed", ErrUnavailable)

// Caller is the kind of client a store operation serves, for the stores
// whose backend decides per caller what may be seen and changed
// (Capabilities.CallerViews).
type Caller uint8

const (
	// CallerUser is a user reading or changing their own attributes
	// through the self-service routes. It is the zero value: an operation
	// that names no caller gets a user's rights, never more.
	CallerUser Caller = iota
	// CallerAdmin is a backend acting as an administrator through the
	// admin API.
	CallerAdmin
)

type callerKey struct{}

// WithCaller returns a context that tells the store whom an operation
// serves.
func WithCaller(ctx context.Context, c Caller) context.Context {
	return context.WithValue(ctx, callerKey{}, c)
}

// CallerOf returns the caller ctx carries: CallerUser when it carries none.
func CallerOf(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}
