package userattrs_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/memory"
)

// stuckStore never returns from a read or a write until released, as a
// store on a frozen disk does not: its context cannot reach a system call.
type stuckStore struct {
	userattrs.Store
	release chan struct{}
	updates int
}

func (s *stuckStore) Get(context.Context, string) (userattrs.Attributes, error) {
	<-s.release
	return userattrs.Attributes{}, nil
}

func (s *stuckStore) Update(context.Context, string, func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	s.updates++
	<-s.release
	return nil
}

func (s *stuckStore) Ping(context.Context) error {
	<-s.release
	return nil
}

// A store that ignores its context costs every call at most the store
// timeout.
func TestStuckStoreCostsTheTimeout(t *testing.T) {
	st := &stuckStore{Store: memory.New(), release: make(chan struct{})}
	defer close(st.release)
	svc := userattrs.NewService(st, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits, StoreTimeout: 50 * time.Millisecond})
	for name, call := range map[string]func() error{
		"Get": func() error { _, err := svc.Get(context.Background(), "u"); return err },
		"Merge": func() error {
			return svc.Merge(context.Background(), "u", userattrs.Patch{{Key: "a", Values: []string{"1"}}}, userattrs.Precondition{})
		},
		"Ping": func() error { return svc.Ping(context.Background()) },
	} {
		start := time.Now()
		err := call()
		if !errors.Is(err, userattrs.ErrUnavailable) || time.Since(start) > 2*time.Second {
			t.Errorf("%s on a stuck store: %v after %v, want ErrUnavailable at the timeout", name, err, time.Since(start))
		}
	}
}

// A body that breaks a per-user bound on its own is refused before the
// store is asked: it must cost a single writer nothing.
func TestBodiesThatCannotFitNeverReachTheStore(t *testing.T) {
	st := &stuckStore{Store: memory.New(), release: make(chan struct{})}
	close(st.release)
	limits := userattrs.DefaultLimits
	limits.MaxAttributes, limits.MaxUserBytes = 3, 100
	svc := userattrs.NewService(st, userattrs.ServiceConfig{Limits: limits})
	many := userattrs.Patch{{Key: "a", Values: []string{"1"}}, {Key: "b", Values: []string{"1"}}, {Key: "c", Values: []string{"1"}}, {Key: "d", Values: []string{"1"}}}
	large := userattrs.Patch{{Key: "a", Values: []string{strings.Repeat("x", 100)}}, {Key: "b", Values: nil}}
	for name, p := range map[string]userattrs.Patch{"four new keys": many, "101 bytes": large} {
		err := svc.Merge(context.Background(), "u", p, userattrs.Precondition{})
		var invalid *userattrs.InvalidError
		if !errors.As(err, &invalid) {
			t.Errorf("%s: %v, want 422", name, err)
		}
		if name == "101 bytes" && (len(invalid.Violations) != 1 || invalid.Violations[0].Key != "a" || !strings.Contains(invalid.Violations[0].Detail, "at most 100 bytes")) {
			t.Errorf("%s: %+v, want the one member that sets a value, with the limit", name, invalid.Violations)
		}
	}
	if st.updates != 0 {
		t.Fatalf("the store was asked %d times", st.updates)
	}
}

// Beyond the bound on store operations a call fails at once; operations
// whose callers gave up hold their slots until the store returns.
func TestStoreOperationsBound(t *testing.T) {
	st := &stuckStore{Store: memory.New(), release: make(chan struct{})}
	svc := userattrs.NewService(st, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits, StoreTimeout: 5 * time.Second,
		MaxStoreOperations: 2})
	for range 2 {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		_, err := svc.Get(ctx, "u")
		cancel()
		if !errors.Is(err, userattrs.ErrUnavailable) || errors.Is(err, userattrs.ErrOverloaded) {
			t.Fatalf("Get on a stuck store: %v, want a timeout", err)
		}
	}
	// Shed at once: long before the 5 s store timeout.
	start := time.Now()
	if _, err := svc.Get(context.Background(), "u"); !errors.Is(err, userattrs.ErrOverloaded) || time.Since(start) > time.Second {
		t.Fatalf("Get beyond the bound: %v after %v, want ErrOverloaded at once", err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := svc.Ping(ctx); errors.Is(err, userattrs.ErrOverloaded) {
		t.Fatal("readiness was shed")
	}
	close(st.release)
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := svc.Get(context.Background(), "u")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slots never came back: %v", err)
		}
		time.Sleep(time.Millisecond)
	}
}

// preparingStore runs updaters as a store that prepares merges before they
// reach its writer does (the SQLite store): the first merge is prepared
// against the current attributes and lands last; the second is prepared
// against attributes that are no longer current, run again against the
// current ones, and lands first.
type preparingStore struct {
	*memory.Store
	stale    userattrs.Attributes
	calls    atomic.Int32
	prepared chan struct{}
	release  chan struct{}
}

func (s *preparingStore) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	if s.calls.Add(1) > 1 {
		update(s.stale)
		return s.Store.Update(ctx, user, update)
	}
	current, _ := s.Store.Get(ctx, user)
	next, err := update(current)
	close(s.prepared)
	<-s.release
	return s.Store.Update(ctx, user, func(userattrs.Attributes) (userattrs.Attributes, error) { return next, err })
}

// A merge that changes nothing, after a call of its updater that would
// have, does not keep the read cache from showing a merge that lands after
// it: a client reads its own write.
func TestReadCacheAfterAPreparedMergeThatChangedNothing(t *testing.T) {
	mem := memory.New()
	set := func(v string) userattrs.Patch { return userattrs.Patch{{Key: "k", Values: []string{v}, BadIndex: -1}} }
	if err := mem.Update(context.Background(), "u", func(a userattrs.Attributes) (userattrs.Attributes, error) {
		return set("1").Merged(a), nil
	}); err != nil {
		t.Fatal(err)
	}
	st := &preparingStore{Store: mem, stale: userattrs.Attributes{"k": {"0"}}, prepared: make(chan struct{}), release: make(chan struct{})}
	svc := userattrs.NewService(st, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits,
		ReadCache: userattrs.ReadCacheConfig{Enabled: true}})
	landed := make(chan error)
	go func() { landed <- svc.Merge(context.Background(), "u", set("2"), userattrs.Precondition{}) }()
	<-st.prepared
	if err := svc.Merge(context.Background(), "u", set("1"), userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	close(st.release)
	if err := <-landed; err != nil {
		t.Fatal(err)
	}
	view, err := svc.Get(context.Background(), "u")
	if err != nil || !view.Attributes().Equal(userattrs.Attributes{"k": {"2"}}) {
		t.Fatalf("read after both merges: %v, %v; want k=2, what the store holds", view.Attributes(), err)
	}
}

// callerStore shows users every attribute but "staff_*", which only
// administrators see and write, as a Keycloak realm's user profile can.
type callerStore struct {
	*memory.Store
}

func (s callerStore) Capabilities() userattrs.Capabilities {
	c := s.Store.Capabilities()
	c.CallerViews = true
	return c
}

func (s callerStore) view(ctx context.Context, a userattrs.Attributes) userattrs.Attributes {
	if userattrs.CallerOf(ctx) == userattrs.CallerAdmin {
		return a
	}
	v := userattrs.Attributes{}
	for k, vs := range a {
		if !strings.HasPrefix(k, "staff_") {
			v[k] = vs
		}
	}
	return v
}

func (s callerStore) Get(ctx context.Context, user string) (userattrs.Attributes, error) {
	a, err := s.Store.Get(ctx, user)
	return s.view(ctx, a), err
}

func (s callerStore) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	return s.Store.Update(ctx, user, func(all userattrs.Attributes) (userattrs.Attributes, error) {
		seen := s.view(ctx, all)
		next, err := update(seen)
		if err != nil {
			return nil, err
		}
		merged := all.Clone()
		for k := range seen {
			delete(merged, k)
		}
		for k, v := range next {
			merged[k] = v
		}
		return merged, nil
	})
}

// On a store whose views depend on the caller, the read cache keeps users'
// views only: an administrator's read or merge never hands a user what only
// administrators see, and the user's ETag covers what the user sees.
func TestReadCacheKeepsUsersViews(t *testing.T) {
	st := callerStore{memory.New()}
	svc := userattrs.NewService(st, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits,
		ReadCache: userattrs.ReadCacheConfig{Enabled: true}})
	ctx := context.Background()
	set := func(k, v string) userattrs.Patch { return userattrs.Patch{{Key: k, Values: []string{v}, BadIndex: -1}} }
	if err := svc.AdminMerge(ctx, "u", set("staff_note", "watch"), userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Merge(ctx, "u", set("pref", "dark"), userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	userView, _ := svc.Get(ctx, "u")
	adminView, err := svc.AdminGet(ctx, "u")
	if err != nil || len(adminView.Attributes()) != 2 {
		t.Fatalf("admin reads %v, %v", adminView.Attributes(), err)
	}
	for i := 0; i < 2; i++ {
		view, _ := svc.Get(ctx, "u")
		if !view.Attributes().Equal(userattrs.Attributes{"pref": {"dark"}}) {
			t.Fatalf("after an admin read, the user reads %v", view.Attributes())
		}
		if view.ETag() != userView.ETag() {
			t.Fatal("the user's ETag moved without a change the user can see")
		}
		if err := svc.AdminMerge(ctx, "u", set("staff_note", "cleared"), userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	// The user's conditional merge holds with the user's ETag, and keeps
	// what the user does not see.
	if err := svc.Merge(ctx, "u", set("pref", "light"), userattrs.IfMatch(false, []string{userView.ETag()})); err != nil {
		t.Fatalf("conditional merge with the user's ETag: %v", err)
	}
	all, _ := st.Store.Get(ctx, "u")
	if !all.Equal(userattrs.Attributes{"pref": {"light"}, "staff_note": {"cleared"}}) {
		t.Fatalf("the store holds %v", all)
	}
}
