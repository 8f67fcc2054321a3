package keycloak

import (
	"context"
	"errors"
	"testing"
	"time"
)

// A merge waiting for the user's lock gives up with its context instead of
// piling up behind a slow holder; the lock then still works.
func TestUserLockEndsWithTheContext(t *testing.T) {
	var locks userLocks
	unlock, err := locks.lock(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := locks.lock(ctx, "alice"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting behind a holder: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("gave up after %s", d)
	}
	if other, err := locks.lock(context.Background(), "bob"); err != nil {
		t.Fatal(err)
	} else {
		other()
	}
	unlock()
	again, err := locks.lock(context.Background(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	again()
	if len(locks.users) != 0 {
		t.Fatalf("%d lock entries left", len(locks.users))
	}
}
