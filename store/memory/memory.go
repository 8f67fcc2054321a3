// Package memory is a store that keeps attributes in the process's memory:
// the reference implementation of the Store contract, with a history and
// an outbox, which passes the whole conformance suite, and a store for
// development and tests. It is not durable: everything is gone when the
// process ends.
package memory

import (
	"context"
	"sync"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
)

// Store keeps attributes in a map. One lock serialises updates of every
// user, which is as atomic as a store can be and fast enough for what it is
// for.
type Store struct {
	cfg    Config
	mu     sync.Mutex
	users  map[string]userattrs.Attributes // never changed once stored
	closed bool
	journal
	delivering sync.Mutex // one dispatcher at a time holds the outbox
}

var _ userattrs.Store = (*Store)(nil)

// Config configures a store.
type Config struct {
	// Events: each change's event goes to the outbox.
	Events bool
	// HistoryBounds bound each user's history (zero: unbounded).
	HistoryBounds userattrs.HistoryBounds
}

// New returns an empty store with the default history bounds and no
// events.
func New() *Store { return Open(Config{HistoryBounds: userattrs.DefaultHistoryBounds}) }

// Open returns an empty store configured by cfg.
func Open(cfg Config) *Store {
	return &Store{cfg: cfg, users: map[string]userattrs.Attributes{}, journal: newJournal()}
}

// Capabilities: one process, nothing durable; an outbox when events are on.
func (s *Store) Capabilities() userattrs.Capabilities {
	return userattrs.Capabilities{Outbox: s.cfg.Events}
}

// Get returns the attributes of user.
func (s *Store) Get(ctx context.Context, user string) (userattrs.Attributes, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, userattrs.ErrClosed
	}
	if a, ok := s.users[user]; ok {
		return a, nil
	}
	return userattrs.Attributes{}, nil
}

// Update runs update under the store's lock. A context that ended before
// the lock was taken changes nothing.
func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return userattrs.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	current, ok := s.users[user]
	if !ok {
		current = userattrs.Attributes{}
	}
	next, changed, err := store.Next(current, update)
	if err != nil || !changed {
		return err
	}
	// A copy, so that nothing the updater or its caller still holds can
	// change what is stored.
	next = next.Clone()
	s.record(userattrs.NewRecord(user, userattrs.OriginOf(ctx), current, next), s.cfg)
	s.users[user] = next
	return nil
}

// Ping answers while the store is open.
func (s *Store) Ping(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return userattrs.ErrClosed
	}
	return nil
}

// Close drops every attribute.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	s.users = nil
	return nil
}

// Kind is the in-memory store's row in the program's table of stores.
func Kind() store.Kind {
	return store.Kind{
		Name:  "memory",
		Form:  "memory: (not durable: for development and tests)",
		Match: func(spec string) bool { return spec == "memory:" },
		Flags: store.NoFlags(func(_ context.Context, _ string, env store.Env) (userattrs.Store, error) {
			return Open(Config{Events: env.Events, HistoryBounds: env.HistoryBounds}), nil
		}),
	}
}
