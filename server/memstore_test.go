package server_test

import (
	"context"
	"errors"
	"sync"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/server"
)

// memStore is a store whose failures a test chooses: it stands in for a
// backend only where the test injects a fault or seeds hidden data.
type memStore struct {
	mu   sync.Mutex
	data map[string]userattrs.Attributes
	fail error
}

var errPanic = errors.New("panic")

func newMemStore() *memStore { return &memStore{data: map[string]userattrs.Attributes{}} }

func (m *memStore) failure() error {
	if m.fail == errPanic {
		panic("store exploded with a secret value")
	}
	return m.fail
}

func (m *memStore) Get(_ context.Context, user string) (userattrs.Attributes, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.failure(); err != nil {
		return nil, err
	}
	if a, ok := m.data[user]; ok {
		return a.Clone(), nil
	}
	return userattrs.Attributes{}, nil
}

func (m *memStore) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	current, err := m.Get(ctx, user)
	if err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	next, err := update(current)
	if err != nil {
		return err
	}
	m.data[user] = next
	return nil
}

func (m *memStore) Ping(context.Context) error { return nil }
func (m *memStore) Close() error               { return nil }

func serverCheck(name string, check func(context.Context) error) server.ReadinessCheck {
	return server.ReadinessCheck{Name: name, Check: check}
}
