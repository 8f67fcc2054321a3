package userattrs

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
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
	r := Record{ID: xid.New().String(), User: user, ClientID: origin.ClientID, RequestID: origin.RequestID,
		Actor: Actor{Type: "user", ID: origin.Actor}, Set: Attributes{}, Removed: []string{}}
	if origin.ServiceAccount {
		r.Actor.Type = "service-account"
	}
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

// History is implemented by stores that record every change in the
// transaction that makes it (Capabilities.History).
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

// OutboxPartitions is how many parts a shared outbox is split into by
// user, so that dispatchers on several instances each take some users'
// events and keep each user's in order.
const OutboxPartitions = 16

// OutboxPartition is the part of the outbox user's events go to.
func OutboxPartition(user string) int {
	h := fnv.New32a()
	h.Write([]byte(user))
	return int(h.Sum32() % OutboxPartitions)
}

// History returns a page of the history of user, newest first, with the
// attributes the policy hides left out (and records that changed nothing
// else), and the cursor of the next page: 0 when there is none.
func (s *Service) History(ctx context.Context, user string, q HistoryQuery) ([]Record, string, error) {
	h, ok := s.store.(History)
	if !ok || !s.store.Capabilities().History {
		return nil, "", ErrNoHistory
	}
	if q.Key != "" && s.policy.Hidden(q.Key) {
		// A hidden attribute's changes are no one's to list, not even
		// when and how often they happened.
		return nil, "", nil
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	key, err := within(ctx, s.ops, func() ([]byte, error) { return h.CursorKey(ctx) })
	if err != nil {
		return nil, "", s.storeError(err)
	}
	q.Before = 0
	if q.Cursor != "" {
		if q.Before, err = openCursor(key, user, q.Cursor); err != nil {
			return nil, "", err
		}
	}
	// Records that changed only hidden attributes are left out, and the
	// page filled from further back instead, so that neither a short page
	// nor an empty one with a next link tells of them. One more record
	// than the page says whether there is a next page at all.
	limit, want := q.Limit, q.Limit+1
	var visible []Record
	for len(visible) < want {
		q.Limit = want - len(visible)
		records, err := within(ctx, s.ops, func() ([]Record, error) { return h.History(ctx, user, q) })
		if err != nil {
			return nil, "", s.storeError(err)
		}
		for _, r := range records {
			if r, ok := s.policy.visibleRecord(r); ok {
				visible = append(visible, r)
			}
		}
		if len(records) < q.Limit {
			break
		}
		q.Before = records[len(records)-1].Seq
	}
	var next string
	if len(visible) > limit {
		visible = visible[:limit]
		next = sealCursor(key, user, visible[limit-1].Seq)
	}
	return visible, next, nil
}

// ErrBadCursor is a history cursor this service did not give out for this
// user's history.
var ErrBadCursor = errors.New("not a cursor of this user's history")

// sealCursor returns the cursor of the page after the record of user with
// seq: one AES block of the seq and a hash of the user, so that a cursor
// tells nothing of how many changes the service has recorded, and one made
// up, changed, or taken from another user's history does not open.
func sealCursor(key []byte, user string, seq int64) string {
	block, err := aes.NewCipher(key)
	if err != nil {
		panic(err) // CursorKey returns 16 bytes
	}
	var plain, sealed [aes.BlockSize]byte
	binary.BigEndian.PutUint64(plain[:8], uint64(seq))
	userHash := sha256.Sum256([]byte(user))
	copy(plain[8:], userHash[:8])
	block.Encrypt(sealed[:], plain[:])
	return base64.RawURLEncoding.EncodeToString(sealed[:])
}

// openCursor returns the seq a cursor of sealCursor seals, or
// ErrBadCursor.
func openCursor(key []byte, user, cursor string) (int64, error) {
	sealed, err := base64.RawURLEncoding.Strict().DecodeString(cursor)
	if err != nil || len(sealed) != aes.BlockSize {
		return 0, ErrBadCursor
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return 0, err
	}
	var plain [aes.BlockSize]byte
	block.Decrypt(plain[:], sealed)
	userHash := sha256.Sum256([]byte(user))
	seq := int64(binary.BigEndian.Uint64(plain[:8]))
	if !bytes.Equal(plain[8:], userHash[:8]) || seq <= 0 {
		return 0, ErrBadCursor
	}
	return seq, nil
}
