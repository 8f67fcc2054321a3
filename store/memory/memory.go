// Package memory is a store that keeps attributes in the process's memory:
// the reference implementation of the Store contract, which passes the
// whole conformance suite, and a store for development and tests. It is
// not durable: everything is gone when the process ends.
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
	mu     sync.Mutex
	users  map[string]userattrs.Attributes // never changed once stored
	closed bool
}

var _ userattrs.Store = (*Store)(nil)

// New returns an empty store.
func New() *Store { return &Store{users: map[string]userattrs.Attributes{}} }

// Capabilities: one process, nothing durable.
func (s *Store) Capabilities() userattrs.Capabilities { return userattrs.Capabilities{} }

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
	next, changed, err := userattrs.Next(current, update)
	if err != nil || !changed {
		return err
	}
	// A copy, so that nothing the updater or its caller still holds can
	// change what is stored.
	s.users[user] = next.Clone()
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
		Flags: store.NoFlags(func(context.Context, string, store.Env) (userattrs.Store, error) { return New(), nil }),
	}
}
