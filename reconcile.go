package userattrs

import (
	"context"
	"fmt"
)

// Directory tells which users an identity provider still knows.
type Directory interface {
	// Known returns which of users the identity provider knows; a user it
	// leaves out is one it no longer knows.
	Known(ctx context.Context, users []string) (map[string]bool, error)
}

// JobLock is implemented by stores shared across instances, so that a
// periodic job (reconciliation) runs on one instance at a time.
type JobLock interface {
	// TryLock takes the lock of job unless another instance holds it:
	// false then. unlock releases it; so does the end of the process.
	TryLock(ctx context.Context, job string) (unlock func(), ok bool, err error)
}

// ReconcileConfig configures a reconciliation.
type ReconcileConfig struct {
	// Apply erases the users the directory no longer knows; without it
	// they are only reported.
	Apply bool
	// MaxErasures stops a reconciliation that finds more unknown users
	// before it erases any: a store checked against the wrong realm would
	// otherwise lose everyone. 0: no bound.
	MaxErasures int
	// PageSize is how many users each lookup asks the directory about
	// (default 1000).
	PageSize int
	// Unknown is told of each user the directory no longer knows, before
	// any is erased.
	Unknown func(user string)
}

// ReconcileResult is what a reconciliation found and did.
type ReconcileResult struct {
	Checked, Unknown, Erased int
}

// ErrTooManyUnknown is a reconciliation that found more unknown users than
// its bound allows, and erased none.
var ErrTooManyUnknown = fmt.Errorf("more users are unknown to the identity provider than the bound on erasures allows: " +
	"check that the store and the realm are the ones that go together; nothing was erased")

// Reconcile pages through the users the store keeps something of, asks dir
// a page at a time which of them the identity provider still knows, and
// reports, and with cfg.Apply erases, the others: once every page is
// checked, so that a wrong directory (MaxErasures) stops it before any
// erasure. Erasures carry the Origin of ctx.
func (s *Service) Reconcile(ctx context.Context, dir Directory, cfg ReconcileConfig) (ReconcileResult, error) {
	var res ReconcileResult
	inv, ok := As[Inventory](s.store)
	if !ok {
		return res, fmt.Errorf("this store keeps nothing but what the identity provider keeps: it has nothing to reconcile")
	}
	page := cfg.PageSize
	if page <= 0 {
		page = 1000
	}
	var unknown []string
	for after := ""; ; {
		users, err := s.users(ctx, inv, after, page)
		if err != nil {
			return res, err
		}
		if len(users) == 0 {
			break
		}
		known, err := dir.Known(ctx, users)
		if err != nil {
			return res, err
		}
		for _, u := range users {
			if !known[u] {
				unknown = append(unknown, u)
			}
		}
		res.Checked += len(users)
		res.Unknown = len(unknown)
		if cfg.MaxErasures > 0 && len(unknown) > cfg.MaxErasures {
			return res, ErrTooManyUnknown
		}
		after = users[len(users)-1]
	}
	for _, u := range unknown {
		if cfg.Unknown != nil {
			cfg.Unknown(u)
		}
	}
	if !cfg.Apply {
		return res, nil
	}
	for _, u := range unknown {
		if err := s.Erase(ctx, u); err != nil {
			return res, fmt.Errorf("erase a user the identity provider no longer knows: %w", err)
		}
		res.Erased++
	}
	return res, nil
}

func (s *Service) users(ctx context.Context, inv Inventory, after string, limit int) ([]string, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	users, err := within(ctx, s.ops, func() ([]string, error) { return inv.Users(ctx, after, limit) })
	return users, s.storeError(err)
}
