package server_test

import (
	"context"
	"errors"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/server"
)

// failingStore fails every read and write of the store it wraps with err,
// or panics where err is errPanic: a backend fault a test chooses.
type failingStore struct {
	userattrs.Store
	err error
}

var errPanic = errors.New("panic")

func (f failingStore) failure() error {
	if f.err == errPanic {
		panic("store exploded with a secret value")
	}
	return f.err
}

func (f failingStore) Get(context.Context, string) (userattrs.Attributes, error) {
	return nil, f.failure()
}

func (f failingStore) Update(context.Context, string, func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	return f.failure()
}

func serverCheck(name string, check func(context.Context) error) server.ReadinessCheck {
	return server.ReadinessCheck{Name: name, Check: check}
}
