package userattrs

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"time"
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

// RecoverPanic turns a panic into a *PanicError in *err, for stores that
// run updates where no caller would recover them. Call it deferred.
func RecoverPanic(err *error) {
	if v := recover(); v != nil {
		*err = &PanicError{Stack: debug.Stack()}
	}
}

// As finds in s, or in the stores s wraps (those with an Unwrap method,
// as instrumented ones have), the first that implements T: a store's
// history, outbox or linked identities, through any wrapper.
func As[T any](s Store) (T, bool) {
	for s != nil {
		if t, ok := s.(T); ok {
			return t, true
		}
		u, ok := s.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		s = u.Unwrap()
	}
	var none T
	return none, false
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

// History is implemented by stores that record every change in the
// transaction that makes it; As finds it through wrappers.
type History interface {
	// History returns the records of user that q selects, newest first.
	History(ctx context.Context, user string, q HistoryQuery) ([]Record, error)
	// PruneHistory removes at most limit records older than before and
	// returns how many it removed; pruning in small steps keeps merges
	// from waiting for it.
	PruneHistory(ctx context.Context, before time.Time, limit int) (int, error)
	// CursorKey returns a random 16-byte key kept with the history, the
	// same for every instance that shares the store, which seals the
	// history's cursors.
	CursorKey(ctx context.Context) ([]byte, error)
}

// Outbox is implemented by stores that write a change event in the
// transaction of each change, when opened with events on
// (Capabilities.Outbox), and let dispatchers deliver them.
//
// A user whose delivery failed, or whose send is still under way, is held:
// no dispatcher, on any instance, takes that user's events until the hold
// ends. Holds are per user, so that one user's failing or slow receiver
// delays only that user's events, and each user's events still go out in
// order.
type Outbox interface {
	// Deliver claims undelivered events that no other dispatcher holds
	// and whose users no hold keeps waiting (on a shared store: those of
	// some users, so that each user's events go out in order through one
	// dispatcher), passes up to max of them to send, oldest first, with
	// the retry state of the users among them that failed before, and
	// applies the Outcome send returns in the same transaction. send
	// keeps each user's order: it never reports an event delivered whose
	// user's earlier event in the batch is not. Deliver returns how many
	// events it passed; 0 when none were waiting.
	Deliver(ctx context.Context, max int, send func(OutboxBatch) Outcome) (int, error)
	// Settle applies the Outcome of sends that went on after their batch
	// ended, under the holds their batch set.
	Settle(ctx context.Context, o Outcome) error
	// OutboxStats reports how many events wait, since when the oldest
	// (zero when none), and how many are parked.
	OutboxStats(ctx context.Context) (OutboxStats, error)
	// Parked returns parked events, oldest parked first, from after (the
	// Seq of the last one a previous page returned, 0 for the first page).
	Parked(ctx context.Context, after int64, limit int) ([]ParkedEvent, error)
	// Unpark puts the parked event with the given id back in the outbox,
	// ahead of its user's later events, and ends its user's hold; it
	// reports false when no parked event has that id.
	Unpark(ctx context.Context, id string) (bool, error)
}

// OutboxBatch is what a dispatcher is given to send.
type OutboxBatch struct {
	Events []Record
	// Retries holds, by user, the state of the users among Events whose
	// delivery failed before.
	Retries map[string]Retry
}

// Retry is a held user's delivery state.
type Retry struct {
	Attempts int       // failed attempts of the user's oldest event
	Since    time.Time // when the first of them failed
}

// Outcome is what a dispatcher reports of a batch: what to remove from
// the outbox, what to park, and which users to hold or release.
type Outcome struct {
	Delivered []int64 // the Seq of each event every sink took
	Parked    []Parking
	Holds     []Hold
	Released  []string // users whose holds end
}

// Parking moves an event that keeps failing to the parked events.
type Parking struct {
	Seq      int64
	Attempts int
	Reason   string // why the last attempt failed; no attribute value
}

// Hold keeps a user's events from every dispatcher for a while: after a
// failure (Attempts > 0), or while a send for the user goes on.
type Hold struct {
	User     string
	For      time.Duration
	Attempts int
	Since    time.Time
}

// OutboxStats describes the outbox.
type OutboxStats struct {
	Depth  int       // events waiting
	Oldest time.Time // the oldest waiting event's time; zero when none
	Parked int       // events parked
}

// ParkedEvent is an event that failed until it was parked.
type ParkedEvent struct {
	Seq      int64 // orders parked events; the admin API's cursor
	Record   Record
	ParkedAt time.Time
	Attempts int
	Reason   string
}

// Add adds o2's changes to o's.
func (o *Outcome) Add(o2 Outcome) {
	o.Delivered = append(o.Delivered, o2.Delivered...)
	o.Parked = append(o.Parked, o2.Parked...)
	o.Holds = append(o.Holds, o2.Holds...)
	o.Released = append(o.Released, o2.Released...)
}

// Empty reports whether the outcome changes nothing.
func (o *Outcome) Empty() bool {
	return len(o.Delivered) == 0 && len(o.Parked) == 0 && len(o.Holds) == 0 && len(o.Released) == 0
}

// ErrNoHistory is what a store without a history answers for one: it
// keeps none, which must never read as a user who changed nothing.
var ErrNoHistory = errors.New("this store keeps no history of changes")
