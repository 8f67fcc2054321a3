package userattrs

import (
	"context"
	"slices"
	"time"

	"github.com/rs/xid"
)

// Origin is who asked for a change: what its history record and its change
// event say of it.
type Origin struct {
	// Actor is the user, or for the admin API the service account: its
	// token's subject, or its client id where the token has no subject.
	Actor string
	// ServiceAccount: the actor is a backend service, not the user.
	ServiceAccount bool
	// ClientID is the application the actor's token was issued to.
	ClientID string
	// RequestID is the id of the HTTP request, as its log and its errors
	// carry it.
	RequestID string
	// TraceParent is the W3C traceparent of the request's span, when it is
	// traced: the change event carries it on to receivers.
	TraceParent string
}

type originKey struct{}

// WithOrigin returns a context that carries origin to the store, which
// records it with each change the merge makes.
func WithOrigin(ctx context.Context, origin Origin) context.Context {
	return context.WithValue(ctx, originKey{}, origin)
}

// OriginOf returns the origin ctx carries; none for changes made outside a
// request.
func OriginOf(ctx context.Context) Origin {
	o, _ := ctx.Value(originKey{}).(Origin)
	return o
}

// Record is one accepted change of a user's attributes: an entry of the
// history, and the data of the change event. Values are always arrays, so
// that a reader needs no rule for one value against several.
type Record struct {
	// ID is unique to the change; its change event has the same id.
	ID string `json:"id"`
	// Seq orders a user's changes as they were committed; the history's
	// cursor. Stores assign it; it is not part of the event.
	Seq  int64     `json:"-"`
	Time time.Time `json:"time"`
	User string    `json:"user"`
	// Actor, ClientID and RequestID are the Origin's.
	Actor     Actor  `json:"actor"`
	ClientID  string `json:"clientId"`
	RequestID string `json:"requestId"`
	// Set are the attributes the change gave a new value, with that value;
	// Removed the ones it removed, in key order.
	Set     Attributes `json:"set"`
	Removed []string   `json:"removed"`
	// TraceParent is the Origin's, kept with the queued event only: the
	// event carries it as its CloudEvents traceparent, and the history
	// does not keep it.
	TraceParent string `json:"traceparent,omitempty"`
	// Erased: the record is of an erasure (Service.Erase), not of a
	// change: its Set and Removed are empty, and its event tells receivers
	// to delete what they hold of the user.
	Erased bool `json:"erased,omitempty"`
}

// Actor is who made a change, as records show it.
type Actor struct {
	// Type is "user" or "service-account".
	Type string `json:"type"`
	ID   string `json:"id"`
}

// NewRecord returns the record of the change from current to next, two
// different maps; Time is left to the store, which knows when it commits.
// It compares only where next differs from current by identity or value:
// an attribute a merge left in place costs a pointer comparison.
func NewRecord(user string, origin Origin, current, next Attributes) Record {
	r := originRecord(user, origin)
	for k, vs := range next {
		if old, ok := current[k]; !ok || !sameValues(old, vs) {
			r.Set[k] = vs
		}
	}
	for k := range current {
		if _, ok := next[k]; !ok {
			r.Removed = append(r.Removed, k)
		}
	}
	slices.Sort(r.Removed)
	return r
}

// originRecord returns a record of user with a new id and what origin
// says of who asked, and nothing set or removed: the start of a change's
// record and the whole of an erasure's.
func originRecord(user string, origin Origin) Record {
	r := Record{ID: xid.New().String(), User: user, ClientID: origin.ClientID, RequestID: origin.RequestID, TraceParent: origin.TraceParent,
		Actor: Actor{Type: "user", ID: origin.Actor}, Set: Attributes{}, Removed: []string{}}
	if origin.ServiceAccount {
		r.Actor.Type = "service-account"
	}
	return r
}

// sameValues reports whether an attribute's values are unchanged: mostly
// they are the very same slice, which a merge leaves in place.
func sameValues(a, b []string) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0] || slices.Equal(a, b))
}

// visibleRecord returns the record with the attributes the policy hides left
// out, and whether anything is left. Reserved names stay: the history is
// read by backends through the admin API, not decoded by apps, and shows
// the removals that clean them up.
func (p Policy) visibleRecord(r Record) (Record, bool) {
	if p.hidden.empty() {
		return r, true
	}
	r.Set = without(r.Set, p.hidden)
	r.Removed = slices.DeleteFunc(slices.Clone(r.Removed), p.Hidden)
	return r, len(r.Set)+len(r.Removed) > 0
}

// HistoryBounds bound what one user's history keeps. Once a change's
// record takes the user past either bound, the user's oldest records go,
// in the transaction that adds the record: however fast a user writes,
// their history takes at most this much room. The zero value bounds
// nothing.
type HistoryBounds struct {
	MaxRecords int   // records per user
	MaxBytes   int64 // bytes per user, of the record as stored (its names, values and ids)
	// Off keeps no history at all (--history=off), for operators whose
	// users' changes must leave no trail: a change writes no record, only
	// its event when events are on, and History answers ErrNoHistory.
	Off bool
}

// DefaultHistoryBounds are the bounds unless an operator chooses others:
// an audit trail longer than this is theirs to ask for.
var DefaultHistoryBounds = HistoryBounds{MaxRecords: 1000, MaxBytes: 1 << 20}

// HistoryQuery selects a page of a user's history, newest first.
type HistoryQuery struct {
	// Before is where a page starts, for stores: only changes with a lower
	// Seq; 0 for the newest.
	Before int64
	// Cursor is where a page starts, for clients of Service.History: a
	// cursor it gave out, "" for the newest. It seals Before.
	Cursor string
	// Key keeps only changes that set or removed it; "" keeps all.
	Key string
	// Since and Until keep changes at or after Since and before Until;
	// zero for no bound.
	Since, Until time.Time
	// Limit is the most records a page holds.
	Limit int
}
