package conformance

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/userattrs/userattrs"
)

// set returns an updater that sets key to value and keeps the rest.
func set(key, value string) func(userattrs.Attributes) (userattrs.Attributes, error) {
	return func(cur userattrs.Attributes) (userattrs.Attributes, error) {
		next := cur.Clone()
		next[key] = []string{value}
		return next, nil
	}
}

func mustStoreGet(t *testing.T, s userattrs.Store, user string) userattrs.Attributes {
	t.Helper()
	got, err := s.Get(context.Background(), user)
	if err != nil {
		t.Fatalf("Get(%s): %v", user, err)
	}
	return got
}

// RunStoreTests checks the clauses of the Store contract on the store
// itself, without the service in between.
func RunStoreTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	t.Run("a user without attributes reads an empty, non-nil map", func(t *testing.T) {
		h := newHarness(t)
		got := mustStoreGet(t, h.Store, h.NewUser(t))
		if got == nil || len(got) != 0 {
			t.Fatalf("Get = %#v, want an empty map", got)
		}
	})

	t.Run("update gets the current attributes and its result is durable on return", func(t *testing.T) {
		h := newHarness(t)
		user := h.NewUser(t)
		ctx := context.Background()
		if err := h.Store.Update(ctx, user, set("a", "1")); err != nil {
			t.Fatal(err)
		}
		var seen userattrs.Attributes
		err := h.Store.Update(ctx, user, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			seen = cur.Clone()
			return set("b", "2")(cur)
		})
		if err != nil {
			t.Fatal(err)
		}
		wantAttributes(t, seen, userattrs.Attributes{"a": {"1"}})
		wantAttributes(t, mustStoreGet(t, h.Store, user), userattrs.Attributes{"a": {"1"}, "b": {"2"}})
		if err := h.Store.Update(ctx, user, func(userattrs.Attributes) (userattrs.Attributes, error) {
			return userattrs.Attributes{}, nil
		}); err != nil {
			t.Fatal(err)
		}
		if got := mustStoreGet(t, h.Store, user); got == nil || len(got) != 0 {
			t.Fatalf("after removing every attribute: %#v", got)
		}
	})

	t.Run("an updater's error aborts the change and comes back as it is", func(t *testing.T) {
		h := newHarness(t)
		user := h.NewUser(t)
		boom := errors.New("boom")
		if err := h.Store.Update(context.Background(), user, set("a", "1")); err != nil {
			t.Fatal(err)
		}
		err := h.Store.Update(context.Background(), user, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			next, _ := set("b", "2")(cur)
			return next, boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update = %v, want the updater's error", err)
		}
		wantAttributes(t, mustStoreGet(t, h.Store, user), userattrs.Attributes{"a": {"1"}})
	})

	t.Run("a panicking updater is its update's error, and the others go on", func(t *testing.T) {
		h := newHarness(t)
		user, other := h.NewUser(t), h.NewUser(t)
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				if i == 3 {
					errs[i] = h.Store.Update(context.Background(), user, func(userattrs.Attributes) (userattrs.Attributes, error) {
						panic("a value that must not be logged")
					})
					return
				}
				errs[i] = h.Store.Update(context.Background(), other, set(string(rune('a'+i)), "v"))
			})
		}
		wg.Wait()
		var p *userattrs.PanicError
		if !errors.As(errs[3], &p) {
			t.Fatalf("the panicking update returned %v, want a *PanicError", errs[3])
		}
		for i, err := range errs {
			if i != 3 && err != nil {
				t.Errorf("update %d beside the panic: %v", i, err)
			}
		}
		if got := mustStoreGet(t, h.Store, other); len(got) != 7 {
			t.Fatalf("the other user has %v", got)
		}
	})

	t.Run("an update whose context has ended reports what it did", func(t *testing.T) {
		h := newHarness(t)
		user := h.NewUser(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := h.Store.Update(ctx, user, set("a", "1"))
		got := mustStoreGet(t, h.Store, user)
		switch {
		case err == nil:
			wantAttributes(t, got, userattrs.Attributes{"a": {"1"}})
		case errors.Is(err, context.Canceled) || errors.Is(err, userattrs.ErrUnavailable):
			wantAttributes(t, got, userattrs.Attributes{})
		default:
			t.Fatalf("Update with an ended context: %v", err)
		}
	})

	if caps := newHarness(t).Store.Capabilities(); caps.KnownUsers {
		t.Run("an unknown user is ErrUserNotFound", func(t *testing.T) {
			h := newHarness(t)
			if _, err := h.Store.Get(context.Background(), h.UnknownUser); !errors.Is(err, userattrs.ErrUserNotFound) {
				t.Fatalf("Get: %v", err)
			}
			if err := h.Store.Update(context.Background(), h.UnknownUser, set("a", "1")); !errors.Is(err, userattrs.ErrUserNotFound) {
				t.Fatalf("Update: %v", err)
			}
		})
	}

	t.Run("after Close every method is ErrClosed", func(t *testing.T) {
		h := newHarness(t)
		user := h.NewUser(t)
		if err := h.Store.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		ctx := context.Background()
		if _, err := h.Store.Get(ctx, user); !errors.Is(err, userattrs.ErrClosed) {
			t.Errorf("Get after Close: %v", err)
		}
		if err := h.Store.Update(ctx, user, set("a", "1")); !errors.Is(err, userattrs.ErrClosed) {
			t.Errorf("Update after Close: %v", err)
		}
		if err := h.Store.Ping(ctx); !errors.Is(err, userattrs.ErrClosed) {
			t.Errorf("Ping after Close: %v", err)
		}
		if err := h.Store.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		if !errors.Is(userattrs.ErrClosed, userattrs.ErrUnavailable) {
			t.Error("ErrClosed is not ErrUnavailable")
		}
	})
}
