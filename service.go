package userattrs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"
)

// Precondition is an If-Match condition on a merge. The zero value is no
// condition and always holds.
type Precondition struct {
	present bool
	any     bool     // holds for any current representation
	etags   []string // strong entity tags, quoted; one must be current
}

// IfMatch returns the condition that the current representation has one of
// etags (strong entity tags, quoted), or any at all. With neither it holds
// for no representation: what a malformed If-Match asks for.
func IfMatch(any bool, etags []string) Precondition {
	return Precondition{present: true, any: any, etags: etags}
}

// Holds reports whether the precondition holds for a representation with
// the given entity tag.
func (p Precondition) Holds(etag string) bool {
	return !p.needsTag() || slices.Contains(p.etags, etag)
}

// needsTag reports whether the precondition depends on the representation's
// entity tag: a merge without one does not hash the user's attributes.
func (p Precondition) needsTag() bool { return p.present && !p.any }

// Service reads and merges the attributes of users: it applies the policy,
// the limits and the merge rules, and leaves keeping the data to a Store.
type Service struct {
	store   Store
	limits  Limits
	policy  atomic.Pointer[Policy] // SetPolicy replaces it
	timeout time.Duration
	cache   *readCache    // nil when off
	ops     chan struct{} // a slot per store operation running; nil: no bound
	// callerViews: the store shows users and administrators different
	// attributes, and the read cache keeps users' views only.
	callerViews bool
	admit       func() error // nil: every merge is taken
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Limits Limits
	Policy Policy
	// StoreTimeout bounds every store operation; a store that takes longer
	// is reported as ErrUnavailable. Zero means no bound.
	StoreTimeout time.Duration
	// ReadCache keeps recently read and written users in memory, where the
	// store's capabilities allow it.
	ReadCache ReadCacheConfig
	// MaxStoreOperations bounds the store operations running at once,
	// counting those whose callers gave up but the store still runs;
	// beyond it a call fails at once with ErrOverloaded. Zero: no bound.
	MaxStoreOperations int
	// Admit, when set, is asked before every merge, and refuses the merges
	// the service cannot take now (ErrOutboxFull: the outbox of change
	// events is past its bound).
	Admit func() error
}

// NewService returns a service that keeps attributes in store. The read
// cache follows the store's capabilities: none where other instances write
// the store, entries that expire after the configured TTL where others
// write it behind the service's back (none without a TTL), and entries that
// stay where this instance is the only writer.
func NewService(store Store, cfg ServiceConfig) *Service {
	cache := cfg.ReadCache
	caps := store.Capabilities()
	switch {
	case caps.SharedAcrossInstances, caps.ExternalWriters && cache.TTL <= 0:
		cache.Enabled = false
	case !caps.ExternalWriters:
		cache.TTL = 0
	}
	s := &Service{store: store, limits: cfg.Limits, timeout: cfg.StoreTimeout,
		cache: newReadCache(cache), callerViews: caps.CallerViews, admit: cfg.Admit}
	s.policy.Store(&cfg.Policy)
	if cfg.MaxStoreOperations > 0 {
		s.ops = make(chan struct{}, cfg.MaxStoreOperations)
	}
	return s
}

// SetPolicy puts p in force for every operation that starts from now on
// (an attribute policy file reloaded). The read cache stays valid: it
// keeps what the lists, which a reload keeps, let through, and the rules
// filter each client's view of it.
func (s *Service) SetPolicy(p Policy) { s.policy.Store(&p) }

// Policy returns the policy in force.
func (s *Service) Policy() Policy { return *s.policy.Load() }

// Get returns the view of the attributes of user that the user may see,
// for the self-service routes: through the client of the Origin ctx
// carries, where the policy's rules limit what a client reads.
func (s *Service) Get(ctx context.Context, user string) (*View, error) {
	view, err := s.get(WithCaller(ctx, CallerUser), user)
	if err != nil {
		return nil, err
	}
	if readable := s.policy.Load().readableBy(view.attrs, CallerUser, OriginOf(ctx).ClientID); len(readable) != len(view.attrs) {
		// Its own view, whose entity tag covers what this client sees.
		return &View{attrs: readable}, nil
	}
	return view, nil
}

// AdminGet is Get for a backend service through the admin API: on a store
// whose backend gives administrators more rights than users
// (Capabilities.CallerViews), it reads what an administrator may see.
func (s *Service) AdminGet(ctx context.Context, user string) (*View, error) {
	return s.get(WithCaller(ctx, CallerAdmin), user)
}

// ReadCacheStats returns the read cache's counts; false when it is off.
func (s *Service) ReadCacheStats() (ReadCacheStats, bool) {
	if s.cache == nil {
		return ReadCacheStats{}, false
	}
	return s.cache.stats(), true
}

// cached returns the read cache where it may serve the caller of ctx: it
// keeps users' views, which are everyone's unless the store's views
// depend on the caller.
func (s *Service) cached(ctx context.Context) *readCache {
	if s.callerViews && CallerOf(ctx) != CallerUser {
		return nil
	}
	return s.cache
}

func (s *Service) get(ctx context.Context, user string) (*View, error) {
	cache := s.cached(ctx)
	var epoch uint64
	if cache != nil {
		e, ep, ok := cache.get(user, time.Now())
		if ok {
			return e.view, nil
		}
		epoch = ep
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	current, err := within(ctx, s.ops, func() (Attributes, error) { return s.store.Get(ctx, user) })
	if err != nil {
		return nil, s.storeError(err)
	}
	view := &View{attrs: s.policy.Load().Visible(current)}
	if cache != nil {
		// Counted only where it is kept: a store without a read cache
		// (PostgreSQL) reads every user, and needs no size.
		view.size = view.attrs.Size()
		cache.fill(user, epoch, view, time.Now())
	}
	return view, nil
}

// Merge applies patch to the attributes of user if the precondition holds
// for the representation clients see. A patch that breaks any rule changes
// nothing: the error is an *InvalidError (422), a *ReadOnlyError (403) or
// ErrPreconditionFailed (412).
//
// A merge that runs out of the store timeout, or whose caller goes away, is
// ErrUnavailable. The store then either never applies it, or (a write
// already on its way) reports its outcome later, which the read cache
// follows, so that reads through this instance soon show what the store
// holds either way. Merge itself returns within the timeout even when the
// store hangs.
//
// The store records the change with the Origin that ctx carries.
func (s *Service) Merge(ctx context.Context, user string, patch Patch, cond Precondition) error {
	return s.merge(WithCaller(ctx, CallerUser), user, patch, cond)
}

// AdminMerge is Merge for a backend service through the admin API: it may
// also write the attributes the policy makes read-only for clients (what
// read-only is for), never the hidden ones; on a store with caller views,
// it merges with an administrator's rights there.
func (s *Service) AdminMerge(ctx context.Context, user string, patch Patch, cond Precondition) error {
	return s.merge(WithCaller(ctx, CallerAdmin), user, patch, cond)
}

// merge checks patch against the limits, what the caller (and its client)
// may write, and the rules' value rules, in that order, then applies it.
func (s *Service) merge(ctx context.Context, user string, patch Patch, cond Precondition) error {
	p := s.policy.Load()
	caller, client := CallerOf(ctx), OriginOf(ctx).ClientID
	if err := s.limits.validate(patch, p.Reserved); err != nil {
		return err
	}
	if err := checkWritable(patch, p.writer(caller, client)); err != nil {
		return err
	}
	if bad := p.rules.violations(patch); bad != nil {
		return &InvalidError{Violations: bad}
	}
	if s.admit != nil {
		if err := s.admit(); err != nil {
			return err
		}
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := within(ctx, s.ops, func() (struct{}, error) { return struct{}{}, s.update(ctx, p, user, patch, cond) })
	return s.storeError(err)
}

// within runs op in a goroutine of its own and returns its outcome, or the
// context's error once ctx ends first. A store stuck where its context
// cannot reach it (a system call on a frozen disk) then costs a request at
// most the store timeout. op holds a slot of ops until it returns, however
// long after its caller; with none free, within fails at once: an instance
// under more load than its store can take sheds it instead of queueing
// every request until its timeout. Readiness (nil ops) takes no slot.
func within[T any](ctx context.Context, ops chan struct{}, op func() (T, error)) (T, error) {
	type outcome struct {
		v   T
		err error
	}
	if ops != nil {
		select {
		case ops <- struct{}{}:
		default:
			var zero T
			return zero, ErrOverloaded
		}
	}
	done := make(chan outcome, 1)
	go func() {
		var o outcome
		defer func() { done <- o }()
		if ops != nil {
			defer func() { <-ops }()
		}
		defer RecoverPanic(&o.err)
		o.v, o.err = op()
	}()
	select {
	case o := <-done:
		return o.v, o.err
	case <-ctx.Done():
		var zero T
		return zero, ctx.Err()
	}
}

// update runs a merge in the store and keeps the read cache in step with
// its outcome, whenever that comes: after the caller of Merge may have
// given up waiting. Merge runs it through within, which recovers its
// panics.
func (s *Service) update(ctx context.Context, p *Policy, user string, patch Patch, cond Precondition) (err error) {
	// An administrator's view is not what the cache keeps: a merge made
	// with one makes the user's entry unknown instead.
	cache, viewCached := s.cache, s.cached(ctx) != nil
	var result Attributes
	size := -1 // of result, when known
	var seq uint64
	err = s.store.Update(ctx, user, func(current Attributes) (Attributes, error) {
		// The entity tag is the one this caller's client reads.
		if cond.needsTag() && !cond.Holds(p.readableBy(p.Visible(current), CallerOf(ctx), OriginOf(ctx).ClientID).ETag()) {
			return nil, ErrPreconditionFailed
		}
		if !patch.Changes(current) {
			// A merge that changes nothing takes no sequence, and none
			// left by an earlier call of this updater: it may land before
			// a merge whose sequence is lower (one prepared against the
			// same attributes, which stay current), and must not keep the
			// cache from showing that merge. Its entry, the store's
			// attributes as they are, gives way to any write's.
			result, size, seq = current, -1, 0
			return current, nil
		}
		next := patch.Merged(current)
		total, err := s.limits.checkTotals(patch, current, next)
		if err != nil {
			return nil, err
		}
		result, size = next, total
		if cache != nil {
			// A change is written only if the attributes this call was
			// given are still current when it lands, so no other change
			// of the user lands between this call and its write: the
			// sequence orders changes as they land, even where a store
			// prepares them before its writer takes them.
			seq = cache.seq.Add(1)
		}
		return next, nil
	})
	if cache != nil {
		switch {
		case err == nil && !viewCached:
			cache.forget(user)
		case err == nil:
			visible := p.Visible(result)
			view := &View{attrs: visible, size: size}
			if size < 0 || len(visible) != len(result) {
				view.size = visible.Size()
			}
			cache.written(user, seq, view, time.Now())
		case result != nil:
			// The store failed after the updater ran: the write may or may
			// not have landed.
			cache.forget(user)
		}
	}
	return err
}

// Ping checks that the store can serve requests.
func (s *Service) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	_, err := within(ctx, nil, func() (struct{}, error) { return struct{}{}, s.store.Ping(ctx) })
	return s.storeError(err)
}

func (s *Service) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, s.timeout)
}

// storeError reports a store operation that ran out of time, or whose
// caller went away, as ErrUnavailable on every store alike: neither is an
// internal error.
func (s *Service) storeError(err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return err
}

// History returns a page of the history of user, newest first, with the
// attributes the policy hides left out (and records that changed nothing
// else), and the cursor of the next page: 0 when there is none.
func (s *Service) History(ctx context.Context, user string, q HistoryQuery) ([]Record, string, error) {
	h, ok := As[History](s.store)
	if !ok {
		return nil, "", ErrNoHistory
	}
	p := s.policy.Load()
	if q.Key != "" && p.Hidden(q.Key) {
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
			if r, ok := p.visibleRecord(r); ok {
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
