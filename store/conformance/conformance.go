// Package conformance is the one test suite every Store passes. A store's
// own test file opens the store and calls RunTests.
package conformance

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
)

// Harness is what the suite needs of a store under test.
type Harness struct {
	// Store is a store value of its own for this test: the suite may close
	// it.
	Store userattrs.Store
	// Reopen, for stores that declare SharedAcrossInstances, opens another
	// store value on the same backend, as another instance of the service
	// would.
	Reopen func(t *testing.T) userattrs.Store
	// NewUser returns the id of a user that exists in the store and has no
	// attributes. Stores that create users on first write may return any
	// fresh id.
	NewUser func(t *testing.T) string
	// UnknownUser, for stores that declare KnownUsers, is an id the store
	// knows no user by.
	UnknownUser string
	// Bounded, for stores that declare History, opens a store on a backend
	// of its own, with events on, whose history keeps to bounds.
	Bounded func(t *testing.T, bounds userattrs.HistoryBounds) userattrs.Store
}

// RunTests runs the whole suite against the stores newHarness opens,
// choosing the parts by the capabilities the store declares: the clauses of
// the Store contract on the store itself, then the service's semantics and
// concurrency on top of it (once reading the store directly, once through
// the read cache), and the cross-instance clauses where the store says it
// serves several instances.
func RunTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	probe := newHarness(t).Store
	caps := probe.Capabilities()
	_, keepsHistory := userattrs.As[userattrs.History](probe)
	t.Run("Store", func(t *testing.T) { RunStoreTests(t, newHarness) })
	for _, run := range []struct {
		name  string
		cache userattrs.ReadCacheConfig
	}{
		{"Direct", userattrs.ReadCacheConfig{}},
		{"ReadCache", userattrs.ReadCacheConfig{Enabled: true, TTL: time.Minute}},
	} {
		t.Run(run.name, func(t *testing.T) {
			t.Run("Semantics", func(t *testing.T) { RunSemanticTests(t, newHarness, run.cache) })
			t.Run("Concurrency", func(t *testing.T) { RunConcurrencyTests(t, newHarness, run.cache) })
			t.Run("Timeouts", func(t *testing.T) { RunTimeoutTests(t, newHarness, run.cache) })
		})
	}
	t.Run("Policy", func(t *testing.T) { RunPolicyTests(t, newHarness) })
	if caps.SharedAcrossInstances {
		t.Run("Instances", func(t *testing.T) { RunCrossInstanceTests(t, newHarness) })
	}
	if keepsHistory {
		t.Run("History", func(t *testing.T) { RunHistoryTests(t, newHarness) })
	}
	if caps.Outbox {
		t.Run("Outbox", func(t *testing.T) { RunOutboxTests(t, newHarness) })
	}
	if _, ok := userattrs.As[userattrs.Eraser](probe); ok {
		t.Run("Erasure", func(t *testing.T) { RunErasureTests(t, newHarness) })
		t.Run("ErasureRace", func(t *testing.T) { RunErasureRaceTests(t, newHarness) })
		if caps.KnownUsers {
			t.Run("ErasureOfUnknownUser", func(t *testing.T) { RunUnknownUserErasureTest(t, newHarness(t)) })
		}
	}
}

func newService(s userattrs.Store, cache userattrs.ReadCacheConfig) *userattrs.Service {
	return userattrs.NewService(s, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits, ReadCache: cache})
}

// patch builds a Patch from alternating keys and values: a string value
// sets one value, a []string several, nil removes.
func patch(kv ...any) userattrs.Patch {
	var p userattrs.Patch
	for i := 0; i < len(kv); i += 2 {
		c := userattrs.Change{Key: kv[i].(string), BadIndex: -1}
		switch v := kv[i+1].(type) {
		case string:
			c.Values = []string{v}
		case []string:
			c.Values = v
		case nil:
		default:
			panic(fmt.Sprintf("patch: unsupported value %T", v))
		}
		p = append(p, c)
	}
	return p
}

// begin opens a store for one test and returns it with a service over it and
// a fresh user.
func begin(t *testing.T, newHarness func(t *testing.T) Harness, cache userattrs.ReadCacheConfig) (Harness, *userattrs.Service, string) {
	t.Helper()
	h := newHarness(t)
	return h, newService(h.Store, cache), h.NewUser(t)
}

func mustGet(t *testing.T, svc *userattrs.Service, user string) (userattrs.Attributes, string) {
	t.Helper()
	view, err := svc.Get(context.Background(), user)
	if err != nil {
		t.Fatalf("Get(%s): %v", user, err)
	}
	return view.Attributes(), view.ETag()
}

func mustMerge(t *testing.T, svc *userattrs.Service, user string, p userattrs.Patch) {
	t.Helper()
	if err := svc.Merge(context.Background(), user, p, userattrs.Precondition{}); err != nil {
		t.Fatalf("Merge(%s): %v", user, err)
	}
}

func wantAttributes(t *testing.T, got, want userattrs.Attributes) {
	t.Helper()
	if !got.Equal(want) {
		t.Fatalf("attributes = %v, want %v", got, want)
	}
}

// RunSemanticTests checks what a single client sees: reads, the merge, the
// entity tag and the errors.
func RunSemanticTests(t *testing.T, newHarness func(t *testing.T) Harness, cache userattrs.ReadCacheConfig) {
	long := strings.Repeat("ü", userattrs.DefaultLimits.MaxValueBytes/2)
	manyValues := make([]string, userattrs.DefaultLimits.MaxValues)
	for i := range manyValues {
		manyValues[i] = fmt.Sprintf("v%02d", i)
	}
	merges := []struct {
		name   string
		before userattrs.Patch
		patch  userattrs.Patch
		want   userattrs.Attributes
	}{
		{"new user reads empty", nil, nil, userattrs.Attributes{}},
		{"the published example", nil, patch("referred", "false", "tos_accepted", "true"),
			userattrs.Attributes{"referred": {"false"}, "tos_accepted": {"true"}}},
		{"untouched keys stay", patch("a", "1", "b", "2"), patch("b", "3", "c", "4"),
			userattrs.Attributes{"a": {"1"}, "b": {"3"}, "c": {"4"}}},
		{"null removes", patch("a", "1", "b", "2"), patch("a", nil),
			userattrs.Attributes{"b": {"2"}}},
		{"removing an absent key is a no-op", patch("a", "1"), patch("zz", nil),
			userattrs.Attributes{"a": {"1"}}},
		{"removing the last key leaves empty", patch("a", "1"), patch("a", nil), userattrs.Attributes{}},
		{"empty patch changes nothing", patch("a", "1"), patch(), userattrs.Attributes{"a": {"1"}}},
		{"multi-valued keeps order", nil, patch("langs", []string{"fr", "de", "en", "de"}),
			userattrs.Attributes{"langs": {"fr", "de", "en", "de"}}},
		{"multi-valued replaces single", patch("a", "1"), patch("a", []string{"2", "3"}),
			userattrs.Attributes{"a": {"2", "3"}}},
		{"single replaces multi-valued", patch("a", []string{"2", "3"}), patch("a", "1"),
			userattrs.Attributes{"a": {"1"}}},
		{"unicode, empty and long values round-trip", nil,
			patch("名前", "値 🚀", "long", long, "many", manyValues, "a/b~c", "x\ny\"z"),
			userattrs.Attributes{"名前": {"値 🚀"}, "long": {long}, "many": manyValues, "a/b~c": {"x\ny\"z"}}},
	}
	for _, tc := range merges {
		t.Run(tc.name, func(t *testing.T) {
			_, svc, user := begin(t, newHarness, cache)
			if tc.before != nil {
				mustMerge(t, svc, user, tc.before)
			}
			if tc.patch != nil {
				mustMerge(t, svc, user, tc.patch)
			}
			got, _ := mustGet(t, svc, user)
			wantAttributes(t, got, tc.want)
		})
	}

	// Values some backends cannot keep: a store that declares so refuses
	// them, one violation per member, and changes nothing; the others keep
	// them as sent.
	for _, tc := range []struct {
		name    string
		refused func(userattrs.Capabilities) bool
		patch   userattrs.Patch
		kept    userattrs.Attributes
	}{
		{"NUL in a value", func(c userattrs.Capabilities) bool { return c.NoNULValues },
			patch("nul", "a\x00b"), userattrs.Attributes{"nul": {"a\x00b"}}},
		{"empty string value", func(c userattrs.Capabilities) bool { return c.NoEmptyValues },
			patch("e", "", "l", []string{"x", ""}), userattrs.Attributes{"e": {""}, "l": {"x", ""}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, svc, user := begin(t, newHarness, cache)
			mustMerge(t, svc, user, patch("a", "1"))
			err := svc.Merge(context.Background(), user, tc.patch, userattrs.Precondition{})
			want := userattrs.Attributes{"a": {"1"}}
			if tc.refused(h.Store.Capabilities()) {
				var invalid *userattrs.InvalidError
				if !errors.As(err, &invalid) || len(invalid.Violations) != len(tc.patch) {
					t.Fatalf("merge: %v, want %d violations", err, len(tc.patch))
				}
			} else {
				if err != nil {
					t.Fatalf("merge: %v", err)
				}
				for k, v := range tc.kept {
					want[k] = v
				}
			}
			got, _ := mustGet(t, svc, user)
			wantAttributes(t, got, want)
		})
	}

	t.Run("users are separate", func(t *testing.T) {
		h := newHarness(t)
		svc := newService(h.Store, cache)
		alice, bob := h.NewUser(t), h.NewUser(t)
		mustMerge(t, svc, alice, patch("a", "alice"))
		mustMerge(t, svc, bob, patch("a", "bob", "b", "bob"))
		got, _ := mustGet(t, svc, alice)
		wantAttributes(t, got, userattrs.Attributes{"a": {"alice"}})
		got, _ = mustGet(t, svc, bob)
		wantAttributes(t, got, userattrs.Attributes{"a": {"bob"}, "b": {"bob"}})
	})

	t.Run("entity tag follows content", func(t *testing.T) {
		_, svc, user := begin(t, newHarness, cache)
		_, empty := mustGet(t, svc, user)
		mustMerge(t, svc, user, patch("a", "1"))
		_, one := mustGet(t, svc, user)
		if one == empty {
			t.Fatalf("ETag did not change on write: %s", one)
		}
		mustMerge(t, svc, user, patch())
		if _, again := mustGet(t, svc, user); again != one {
			t.Fatalf("ETag changed without a change: %s then %s", one, again)
		}
		mustMerge(t, svc, user, patch("a", nil))
		if _, back := mustGet(t, svc, user); back != empty {
			t.Fatalf("ETag of the same content differs: %s vs %s", back, empty)
		}
	})

	t.Run("If-Match", func(t *testing.T) {
		_, svc, user := begin(t, newHarness, cache)
		mustMerge(t, svc, user, patch("a", "1"))
		_, etag := mustGet(t, svc, user)
		ctx := context.Background()
		if err := svc.Merge(ctx, user, patch("b", "2"), userattrs.IfMatch(false, []string{etag})); err != nil {
			t.Fatalf("merge with the current ETag: %v", err)
		}
		err := svc.Merge(ctx, user, patch("c", "3"), userattrs.IfMatch(false, []string{etag}))
		if !errors.Is(err, userattrs.ErrPreconditionFailed) {
			t.Fatalf("merge with a stale ETag: %v, want ErrPreconditionFailed", err)
		}
		got, _ := mustGet(t, svc, user)
		wantAttributes(t, got, userattrs.Attributes{"a": {"1"}, "b": {"2"}})
		if err := svc.Merge(ctx, user, patch("d", "4"), userattrs.IfMatch(true, nil)); err != nil {
			t.Fatalf("merge with If-Match *: %v", err)
		}
	})

	t.Run("a failing updater changes nothing", func(t *testing.T) {
		h := newHarness(t)
		user := h.NewUser(t)
		svc := newService(h.Store, cache)
		mustMerge(t, svc, user, patch("a", "1"))
		boom := errors.New("boom")
		err := h.Store.Update(context.Background(), user, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			cur = cur.Clone()
			cur["b"] = []string{"2"}
			return cur, boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("Update returned %v, want the updater's error", err)
		}
		got, _ := mustGet(t, svc, user)
		wantAttributes(t, got, userattrs.Attributes{"a": {"1"}})
	})

	t.Run("the attribute count limit holds after the merge", func(t *testing.T) {
		h := newHarness(t)
		user := h.NewUser(t)
		svc := userattrs.NewService(h.Store, userattrs.ServiceConfig{ReadCache: cache, Limits: userattrs.Limits{
			MaxAttributes: 3, MaxKeyBytes: 255, MaxValueBytes: 2048, MaxValues: 64}})
		mustMerge(t, svc, user, patch("a", "1", "b", "2"))
		err := svc.Merge(context.Background(), user, patch("c", "3", "d", "4"), userattrs.Precondition{})
		var invalid *userattrs.InvalidError
		if !errors.As(err, &invalid) || len(invalid.Violations) != 2 {
			t.Fatalf("merge past the limit: %v, want two violations", err)
		}
		mustMerge(t, svc, user, patch("a", nil, "c", "3", "d", "4"))
		got, _ := mustGet(t, svc, user)
		wantAttributes(t, got, userattrs.Attributes{"b": {"2"}, "c": {"3"}, "d": {"4"}})
	})

	t.Run("the size limit holds after the merge", func(t *testing.T) {
		h := newHarness(t)
		user := h.NewUser(t)
		svc := userattrs.NewService(h.Store, userattrs.ServiceConfig{ReadCache: cache, Limits: userattrs.Limits{
			MaxAttributes: 10, MaxKeyBytes: 255, MaxValueBytes: 2048, MaxValues: 64, MaxUserBytes: 100}})
		mustMerge(t, svc, user, patch("a", strings.Repeat("x", 59), "b", "1")) // 60 + 2 bytes
		err := svc.Merge(context.Background(), user, patch("c", strings.Repeat("y", 39)), userattrs.Precondition{})
		var invalid *userattrs.InvalidError
		if !errors.As(err, &invalid) || len(invalid.Violations) != 1 || !strings.Contains(invalid.Violations[0].Detail, "at most 100 bytes") {
			t.Fatalf("merge past the size limit: %v, want one violation naming the limit", err)
		}
		// Replacing a value counts the new one only: 62 - 60 + 38 = 100.
		mustMerge(t, svc, user, patch("a", strings.Repeat("z", 37)))
		mustMerge(t, svc, user, patch("b", nil, "c", "1"))
		got, _ := mustGet(t, svc, user)
		wantAttributes(t, got, userattrs.Attributes{"a": {strings.Repeat("z", 37)}, "c": {"1"}})
	})

	if probe := newHarness(t); probe.Store.Capabilities().KnownUsers { // stores that create users on first write have none
		t.Run("unknown user", func(t *testing.T) {
			h := newHarness(t)
			svc := newService(h.Store, cache)
			if _, err := svc.Get(context.Background(), h.UnknownUser); !errors.Is(err, userattrs.ErrUserNotFound) {
				t.Fatalf("Get: %v, want ErrUserNotFound", err)
			}
			if err := svc.Merge(context.Background(), h.UnknownUser, patch("a", "1"), userattrs.Precondition{}); !errors.Is(err, userattrs.ErrUserNotFound) {
				t.Fatalf("Merge: %v, want ErrUserNotFound", err)
			}
		})
	}

	t.Run("ping", func(t *testing.T) {
		h := newHarness(t)
		if err := h.Store.Ping(context.Background()); err != nil {
			t.Fatalf("Ping: %v", err)
		}
	})
}

// RunConcurrencyTests checks that concurrent merges of one user never lose
// each other's changes and that If-Match is a real compare-and-set.
func RunConcurrencyTests(t *testing.T, newHarness func(t *testing.T) Harness, cache userattrs.ReadCacheConfig) {
	t.Run("concurrent merges of distinct keys lose nothing", func(t *testing.T) {
		_, svc, user := begin(t, newHarness, cache)
		const writers, perWriter = 8, 12
		var wg sync.WaitGroup
		errs := make(chan error, writers*perWriter)
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					key := fmt.Sprintf("w%d-k%d", w, i)
					if err := svc.Merge(context.Background(), user, patch(key, key), userattrs.Precondition{}); err != nil {
						errs <- fmt.Errorf("%s: %w", key, err)
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		got, _ := mustGet(t, svc, user)
		if len(got) != writers*perWriter {
			t.Errorf("after %d merges the user has %d attributes", writers*perWriter, len(got))
		}
		for w := range writers {
			for i := range perWriter {
				key := fmt.Sprintf("w%d-k%d", w, i)
				if v := got[key]; len(v) != 1 || v[0] != key {
					t.Errorf("key %s lost: %v", key, v)
				}
			}
		}
	})

	t.Run("every writer reads its own writes", func(t *testing.T) {
		_, svc, user := begin(t, newHarness, cache)
		const writers, perWriter = 4, 8
		var wg sync.WaitGroup
		for w := range writers {
			wg.Go(func() {
				for i := range perWriter {
					key := fmt.Sprintf("own%d-%d", w, i)
					if err := svc.Merge(context.Background(), user, patch(key, key), userattrs.Precondition{}); err != nil {
						t.Errorf("%s: %v", key, err)
						return
					}
					view, err := svc.Get(context.Background(), user)
					if err != nil {
						t.Errorf("Get: %v", err)
						return
					}
					got := view.Attributes()
					for j := 0; j <= i; j++ {
						if k := fmt.Sprintf("own%d-%d", w, j); got[k] == nil {
							t.Errorf("after its merge of %s, writer %d reads no %s", key, w, k)
						}
					}
				}
			})
		}
		wg.Wait()
	})

	t.Run("If-Match lets exactly one of racing writers through", func(t *testing.T) {
		_, svc, user := begin(t, newHarness, cache)
		mustMerge(t, svc, user, patch("winner", "none"))
		_, etag := mustGet(t, svc, user)
		raceIfMatch(t, []*userattrs.Service{svc}, user, etag, 6)
	})
}

// raceIfMatch sends racers merges of user at once, each conditional on
// etag, spread over services, and wants exactly one to win and the others
// to fail their precondition.
func raceIfMatch(t *testing.T, services []*userattrs.Service, user, etag string, racers int) {
	t.Helper()
	results := make(chan error, racers)
	var wg sync.WaitGroup
	for r := range racers {
		svc := services[r%len(services)]
		wg.Go(func() {
			results <- svc.Merge(context.Background(), user, patch("winner", fmt.Sprint(r)), userattrs.IfMatch(false, []string{etag}))
		})
	}
	wg.Wait()
	close(results)
	won := 0
	for err := range results {
		switch {
		case err == nil:
			won++
		case errors.Is(err, userattrs.ErrPreconditionFailed):
		default:
			t.Errorf("racing merge: %v", err)
		}
	}
	if won != 1 {
		t.Fatalf("%d racing conditional merges succeeded, want exactly 1", won)
	}
}
