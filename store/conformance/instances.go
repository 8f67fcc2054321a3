package conformance

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
)

// RunTimeoutTests checks what a merge whose caller gave up (its deadline
// passed, or the client hung up) leaves behind: whatever the store did with
// it, reads through the same service soon show what the store holds, read
// cache or not.
func RunTimeoutTests(t *testing.T, newHarness func(t *testing.T) Harness, cache userattrs.ReadCacheConfig) {
	t.Run("after timeouts and hang-ups, reads show what the store holds", func(t *testing.T) {
		h := newHarness(t)
		if cache.Enabled && h.Store.Capabilities().ExternalWriters {
			// Such a store's entries may be stale for their TTL anyway.
			cache.TTL = time.Second
		}
		svc := newService(h.Store, cache)
		users := make([]string, 12)
		for i := range users {
			users[i] = h.NewUser(t)
			mustGet(t, svc, users[i]) // cached, where the service caches
		}

		// Other users' merges keep the store busy, so that hurried merges
		// wait behind them.
		busy := h.NewUser(t)
		stop := make(chan struct{})
		var background sync.WaitGroup
		for w := range 4 {
			background.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					svc.Merge(context.Background(), busy, patch(fmt.Sprintf("b%d", w), fmt.Sprint(i)), userattrs.Precondition{})
				}
			})
		}
		var gaveUp atomic.Int64
		var wg sync.WaitGroup
		for _, user := range users {
			for k := range 8 {
				wg.Go(func() {
					ctx, cancel := context.WithCancel(context.Background())
					defer cancel()
					wait := time.Duration(rand.IntN(4000)) * time.Microsecond
					if k%2 == 0 {
						ctx, cancel = context.WithTimeout(ctx, wait)
						defer cancel()
					} else {
						time.AfterFunc(wait, cancel) // the client hangs up
					}
					err := svc.Merge(ctx, user, patch(fmt.Sprintf("k%d", k), "v"), userattrs.Precondition{})
					switch {
					case err == nil:
					case errors.Is(err, userattrs.ErrUnavailable):
						gaveUp.Add(1)
					default:
						t.Errorf("a hurried merge: %v, want nil or ErrUnavailable", err)
					}
				})
			}
		}
		wg.Wait()
		close(stop)
		background.Wait()
		t.Logf("%d of %d hurried merges gave up", gaveUp.Load(), len(users)*8)

		deadline := time.Now().Add(5 * time.Second)
		for {
			var stale []string
			for _, user := range users {
				if got, _ := mustGet(t, svc, user); !got.Equal(mustStoreGet(t, h.Store, user)) {
					stale = append(stale, user)
				}
			}
			if len(stale) == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d of %d users read differently through the service than the store holds", len(stale), len(users))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
}

// RunCrossInstanceTests checks, for stores that declare
// SharedAcrossInstances, that two store values on one backend (two
// instances of the service) keep the contract together.
func RunCrossInstanceTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	// Asking for the read cache checks that the service declines it for a
	// store other instances write.
	cached := userattrs.ReadCacheConfig{Enabled: true, TTL: time.Minute}
	instances := func(t *testing.T) (*userattrs.Service, *userattrs.Service, string) {
		h := newHarness(t)
		other := h.Reopen(t)
		t.Cleanup(func() { other.Close() })
		return newService(h.Store, cached), newService(other, cached), h.NewUser(t)
	}

	t.Run("concurrent merges through both lose nothing", func(t *testing.T) {
		a, b, user := instances(t)
		const writers, perWriter = 8, 10
		var wg sync.WaitGroup
		for w := range writers {
			for _, svc := range []*userattrs.Service{a, b} {
				wg.Go(func() {
					for i := range perWriter {
						key := fmt.Sprintf("%p-w%d-k%d", svc, w, i)
						if err := svc.Merge(context.Background(), user, patch(key, "v"), userattrs.Precondition{}); err != nil {
							t.Errorf("%s: %v", key, err)
						}
					}
				})
			}
		}
		wg.Wait()
		for _, svc := range []*userattrs.Service{a, b} {
			if got, _ := mustGet(t, svc, user); len(got) != 2*writers*perWriter {
				t.Fatalf("after %d merges an instance reads %d attributes", 2*writers*perWriter, len(got))
			}
		}
	})

	t.Run("exactly one of racing conditional merges through both wins", func(t *testing.T) {
		a, b, user := instances(t)
		mustMerge(t, a, user, patch("winner", "none"))
		_, etag := mustGet(t, b, user)
		raceIfMatch(t, []*userattrs.Service{a, b}, user, etag, 10)
	})

	t.Run("a write through one is read through the other", func(t *testing.T) {
		a, b, user := instances(t)
		for i := range 20 {
			writer, reader := a, b
			if i%2 == 1 {
				writer, reader = b, a
			}
			mustGet(t, reader, user)
			mustMerge(t, writer, user, patch("n", fmt.Sprint(i)))
			if got, _ := mustGet(t, reader, user); len(got["n"]) != 1 || got["n"][0] != fmt.Sprint(i) {
				t.Fatalf("write %d read through the other instance as %v", i, got["n"])
			}
		}
	})
}
