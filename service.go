package userattrs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Precondition is an If-Match condition on a merge. The zero value is no
// condition and always holds.
type Precondition struct {
	present bool
	any     bool     // If-Match: *, which holds for any current representation
	etags   []string // strong entity tags, quoted; one must be current
}

// IfMatch parses the values of If-Match header fields (RFC 9110, 13.1.1).
// No values means no condition. Weak tags are dropped because If-Match
// compares strongly; a malformed field holds for no representation, so a
// garbled condition never lets a write through.
func IfMatch(values []string) Precondition {
	if len(values) == 0 {
		return Precondition{}
	}
	p := Precondition{present: true}
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			if v[0] == '*' {
				p.any = true
				v = v[1:]
				continue
			}
			weak := strings.HasPrefix(v, "W/")
			if weak {
				v = v[2:]
			}
			if !strings.HasPrefix(v, `"`) {
				return Precondition{present: true}
			}
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				return Precondition{present: true}
			}
			if !weak {
				p.etags = append(p.etags, v[:end+2])
			}
			v = v[end+2:]
		}
	}
	return p
}

// Holds reports whether the precondition holds for a representation with
// the given entity tag.
func (p Precondition) Holds(etag string) bool {
	if !p.present || p.any {
		return true
	}
	return slices.Contains(p.etags, etag)
}

// Service reads and merges the attributes of users: it applies the policy,
// the limits and the merge rules, and leaves keeping the data to a Store.
type Service struct {
	store   Store
	limits  Limits
	policy  Policy
	timeout time.Duration
	cache   *readCache // nil when off
}

// ServiceConfig configures a Service.
type ServiceConfig struct {
	Limits Limits
	Policy Policy
	// StoreTimeout bounds every store operation; a store that takes longer
	// is reported as ErrUnavailable. Zero means no bound.
	StoreTimeout time.Duration
	// ReadCache keeps recently read and written users in memory.
	ReadCache ReadCacheConfig
}

// NewService returns a service that keeps attributes in store.
func NewService(store Store, cfg ServiceConfig) *Service {
	return &Service{store: store, limits: cfg.Limits, policy: cfg.Policy, timeout: cfg.StoreTimeout,
		cache: newReadCache(cfg.ReadCache)}
}

// Get returns the attributes of user that clients may see, and the entity
// tag of that representation. The caller must not modify the attributes.
func (s *Service) Get(ctx context.Context, user string) (Attributes, string, error) {
	var epoch uint64
	if s.cache != nil {
		e, ep, ok := s.cache.get(user, time.Now())
		if ok {
			return e.visible, e.etag, nil
		}
		epoch = ep
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	current, err := s.store.Get(ctx, user)
	if err != nil {
		return nil, "", s.storeError(ctx, err)
	}
	visible := s.policy.Visible(current)
	etag := visible.ETag()
	if s.cache != nil {
		s.cache.fill(user, epoch, visible, etag, time.Now())
	}
	return visible, etag, nil
}

// Merge applies patch to the attributes of user if the precondition holds
// for the representation clients see. A patch that breaks any rule changes
// nothing: the error is an *InvalidError (422), a *ReadOnlyError (403) or
// ErrPreconditionFailed (412).
func (s *Service) Merge(ctx context.Context, user string, patch Patch, cond Precondition) error {
	if err := s.limits.Validate(patch); err != nil {
		return err
	}
	if err := s.policy.checkWritable(patch); err != nil {
		return err
	}
	ctx, cancel := s.bound(ctx)
	defer cancel()
	var result Attributes
	var seq uint64
	err := s.store.Update(ctx, user, func(current Attributes) (Attributes, error) {
		if !cond.Holds(s.policy.Visible(current).ETag()) {
			return nil, ErrPreconditionFailed
		}
		next := current.Clone()
		patch.ApplyTo(next)
		if err := s.limits.checkCount(patch, current, next); err != nil {
			return nil, err
		}
		result = next
		if s.cache != nil {
			// The store runs the updaters of one user one at a time, in
			// the order their writes land: the sequence orders them.
			seq = s.cache.seq.Add(1)
		}
		return next, nil
	})
	if s.cache != nil {
		switch {
		case err == nil:
			visible := s.policy.Visible(result)
			s.cache.written(user, seq, visible, visible.ETag(), time.Now())
		case result != nil:
			// The store failed after the updater ran: the write may or may
			// not have landed.
			s.cache.forget(user)
		}
	}
	return s.storeError(ctx, err)
}

// Ping checks that the store can serve requests.
func (s *Service) Ping(ctx context.Context) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	return s.storeError(ctx, s.store.Ping(ctx))
}

func (s *Service) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.timeout)
}

// storeError turns running out of the store's time into ErrUnavailable, so
// that every store reports a slow backend alike.
func (s *Service) storeError(ctx context.Context, err error) error {
	if err == nil || errors.Is(err, ErrUnavailable) {
		return err
	}
	if errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return fmt.Errorf("%w: timed out: %w", ErrUnavailable, err)
	}
	return err
}
