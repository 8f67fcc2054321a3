package userattrs

import (
	"context"
	"errors"
	"time"
)

// Eraser is implemented by stores that can erase a user: what the store
// keeps of them goes, in one transaction.
type Eraser interface {
	// Erase removes the attributes of user and, where the store keeps
	// them, the user's history, undelivered and parked change events and
	// delivery hold. In the same transaction it keeps the record of the
	// erasure (NewErasure, with the Origin ctx carries: no value) and,
	// with events on, queues its event, so that receivers delete their
	// copies. On a store with Capabilities.KnownUsers an unknown user is
	// ErrUserNotFound; elsewhere erasing a user with nothing is no error.
	//
	// landed, when not nil, is called when the erasure takes its place
	// among the user's changes: after every change that lands before it,
	// and before any that lands after it is made (again, where the store
	// tries the erasure again; the last call counts). It must not block.
	Erase(ctx context.Context, user string, landed func()) error
}

// Inventory is implemented by stores that keep more of a user than the
// attributes (a history, an outbox): what an export and a reconciliation
// read.
type Inventory interface {
	// Users returns, in id order, up to limit users with ids after after
	// that have attributes or history, for reconciliation to page
	// through.
	Users(ctx context.Context, after string, limit int) ([]string, error)
	// Pending returns the change events of user not yet delivered, the
	// parked ones included, oldest first.
	Pending(ctx context.Context, user string) ([]Record, error)
	// Erasures returns the records of the erasures of user, oldest first.
	Erasures(ctx context.Context, user string) ([]Record, error)
}

// NewErasure returns the record of an erasure of user: who asked for it,
// and no value. Time is left to the store.
func NewErasure(user string, origin Origin) Record {
	r := originRecord(user, origin)
	r.Erased = true
	return r
}

// ErrNotErasable is what a store that cannot erase users answers.
var ErrNotErasable = errors.New("this store cannot erase users")

// Export is everything the service keeps about one user (GDPR Art. 15 and
// 20): the attributes, hidden ones included and marked, and, where the
// store keeps them, the history, the change events not yet delivered and
// the records of past erasures.
type Export struct {
	User       string                       `json:"user"`
	ExportedAt time.Time                    `json:"exportedAt"`
	Attributes map[string]ExportedAttribute `json:"attributes"`
	// History is newest first; Pending and Erasures oldest first. Each is
	// empty, never null, where the store keeps none.
	History  []Record `json:"history"`
	Pending  []Record `json:"pendingEvents"`
	Erasures []Record `json:"erasures"`
}

// ExportedAttribute is one attribute of an export.
type ExportedAttribute struct {
	Values []string `json:"values"`
	// Hidden: the policy hides it from clients; an export shows it all
	// the same, since it is the user's data.
	Hidden bool `json:"hidden"`
}

// Erase erases user (see Eraser), on behalf of the Origin ctx carries, and
// leaves the user empty in the read cache. An erasure is taken even when
// the outbox is past its bound: it removes events rather than adds them.
func (s *Service) Erase(ctx context.Context, user string) error {
	e, ok := As[Eraser](s.store)
	if !ok {
		return ErrNotErasable
	}
	ctx, cancel := s.bound(WithCaller(ctx, CallerAdmin))
	defer cancel()
	_, err := within(ctx, s.ops, func() (struct{}, error) {
		if s.cache == nil {
			return struct{}{}, e.Erase(ctx, user, nil)
		}
		// The erasure takes a sequence where it lands among the user's
		// merges, as a merge does, so that a merge that landed before it
		// but is acknowledged after it can never bring its attributes
		// back into the cache.
		var seq uint64
		err := e.Erase(ctx, user, func() { seq = s.cache.seq.Add(1) })
		if err != nil || seq == 0 {
			s.cache.forget(user)
		} else {
			s.cache.written(user, seq, &View{attrs: Attributes{}}, time.Now())
		}
		return struct{}{}, err
	})
	return s.storeError(err)
}

// Export returns everything the service keeps about user, read as an
// administrator.
func (s *Service) Export(ctx context.Context, user string) (*Export, error) {
	ctx, cancel := s.bound(WithCaller(ctx, CallerAdmin))
	defer cancel()
	x, err := within(ctx, s.ops, func() (*Export, error) { return s.export(ctx, user) })
	return x, s.storeError(err)
}

func (s *Service) export(ctx context.Context, user string) (*Export, error) {
	attrs, err := s.store.Get(ctx, user)
	if err != nil {
		return nil, err
	}
	p := s.policy.Load()
	x := &Export{User: user, ExportedAt: time.Now().UTC(), Attributes: make(map[string]ExportedAttribute, len(attrs)),
		History: []Record{}, Pending: []Record{}, Erasures: []Record{}}
	for k, vs := range attrs {
		x.Attributes[k] = ExportedAttribute{Values: vs, Hidden: p.Hidden(k)}
	}
	if h, ok := As[History](s.store); ok {
		// The history is bounded per user (HistoryBounds), so it is read
		// whole, a store's page at a time.
		q := HistoryQuery{Limit: maxExportPage}
		for {
			page, err := h.History(ctx, user, q)
			if errors.Is(err, ErrNoHistory) {
				break // kept off (HistoryBounds.Off): there is none to export
			}
			if err != nil {
				return nil, err
			}
			x.History = append(x.History, page...)
			if len(page) < q.Limit {
				break
			}
			q.Before = page[len(page)-1].Seq
		}
	}
	if inv, ok := As[Inventory](s.store); ok {
		if x.Pending, err = inv.Pending(ctx, user); err != nil {
			return nil, err
		}
		if x.Erasures, err = inv.Erasures(ctx, user); err != nil {
			return nil, err
		}
	}
	x.Pending, x.Erasures = nonNil(x.Pending), nonNil(x.Erasures)
	return x, nil
}

// maxExportPage is how many history records an export reads at a time:
// the largest page the SQL stores serve.
const maxExportPage = 1000

func nonNil(r []Record) []Record {
	if r == nil {
		return []Record{}
	}
	return r
}
