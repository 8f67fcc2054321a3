package conformance

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
)

// RunErasureTests checks, on a store that can erase users, that an
// erasure leaves nothing of the user's (attributes, history, waiting
// events) but its own record and event, touches no other user, and, on
// stores that keep more than attributes, what an export and the users'
// listing show before and after.
func RunErasureTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	h, svc, user := begin(t, newHarness, userattrs.ReadCacheConfig{Enabled: true, TTL: time.Minute})
	other := h.NewUser(t)
	origin := userattrs.Origin{Actor: "backend", ServiceAccount: true, ClientID: "ops", RequestID: "req-erase"}
	ctx := userattrs.WithOrigin(context.Background(), origin)
	caps := h.Store.Capabilities()
	inventory, keepsMore := userattrs.As[userattrs.Inventory](h.Store)

	mustMerge(t, svc, user, patch("phone", "+33 6 00 00 00 01"))
	mustMerge(t, svc, user, patch("phone", "+33 6 00 00 00 02", "referred", "yes"))
	mustMerge(t, svc, other, patch("phone", "+33 6 00 00 00 03"))
	mustGet(t, svc, user) // in the read cache, where there is one

	before, err := svc.Export(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	wantAttributes(t, exported(before), userattrs.Attributes{"phone": {"+33 6 00 00 00 02"}, "referred": {"yes"}})
	if _, ok := userattrs.As[userattrs.History](h.Store); ok && len(before.History) != 2 {
		t.Fatalf("export before the erasure: %d history records, want 2", len(before.History))
	}
	if caps.Outbox && len(before.Pending) < 2 {
		t.Fatalf("export before the erasure: %d events waiting, want the user's 2", len(before.Pending))
	}

	if err := svc.Erase(ctx, user); err != nil {
		t.Fatal(err)
	}
	got, _ := mustGet(t, svc, user)
	wantAttributes(t, got, userattrs.Attributes{})
	got, _ = mustGet(t, svc, other)
	wantAttributes(t, got, userattrs.Attributes{"phone": {"+33 6 00 00 00 03"}})
	if hist, ok := userattrs.As[userattrs.History](h.Store); ok {
		records, err := hist.History(ctx, user, userattrs.HistoryQuery{Limit: 10})
		if err != nil || len(records) != 0 {
			t.Fatalf("history after the erasure: %v, %v", records, err)
		}
		if records, err := hist.History(ctx, other, userattrs.HistoryQuery{Limit: 10}); err != nil || len(records) != 1 {
			t.Fatalf("another user's history after the erasure: %v, %v", records, err)
		}
	}
	after, err := svc.Export(ctx, user)
	if err != nil {
		t.Fatal(err)
	}
	if len(after.Attributes) != 0 || len(after.History) != 0 {
		t.Fatalf("export after the erasure: %+v", after)
	}
	if !keepsMore {
		return
	}
	if len(after.Erasures) != 1 {
		t.Fatalf("export after the erasure: %d erasures, want 1", len(after.Erasures))
	}
	e := after.Erasures[0]
	if !e.Erased || e.User != user || e.Actor != (userattrs.Actor{Type: "service-account", ID: "backend"}) || e.ClientID != "ops" ||
		e.RequestID != "req-erase" || len(e.Set) != 0 || time.Since(e.Time) > time.Minute {
		t.Fatalf("the erasure's record: %+v", e)
	}
	if caps.Outbox {
		// Only the erasure's own event is left, for receivers to delete
		// their copies.
		if len(after.Pending) != 1 || !after.Pending[0].Erased || after.Pending[0].ID != e.ID {
			t.Fatalf("events waiting after the erasure: %+v", after.Pending)
		}
		if pending, err := inventory.Pending(ctx, other); err != nil || len(pending) != 1 {
			t.Fatalf("another user's events after the erasure: %v, %v", pending, err)
		}
	}
	var listed []string
	for after := ""; ; {
		page, err := inventory.Users(ctx, after, 1)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		listed, after = append(listed, page...), page[len(page)-1]
	}
	if slices.Contains(listed, user) || !slices.Contains(listed, other) || !slices.IsSorted(listed) {
		t.Fatalf("users after the erasure: %q; want %s and not %s", listed, other, user)
	}
	// Erasing a user with nothing left is no error, and is recorded too.
	if err := svc.Erase(ctx, user); err != nil {
		t.Fatal(err)
	}
	if erasures, err := inventory.Erasures(ctx, user); err != nil || len(erasures) != 2 {
		t.Fatalf("erasures: %v, %v", erasures, err)
	}
}

// RunErasureRaceTests checks that merges racing an erasure leave the read
// cache and the store's knowledge as the store holds the user: what the
// erasure removed never comes back, on any read.
func RunErasureRaceTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	h, svc, user := begin(t, newHarness, userattrs.ReadCacheConfig{Enabled: true, TTL: time.Minute})
	ctx := context.Background()
	for round := range 5 {
		mustMerge(t, svc, user, patch("phone", "erased-"+strconv.Itoa(round)))
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				if err := svc.Merge(ctx, user, patch("n"+strconv.Itoa(i), strconv.Itoa(round)), userattrs.Precondition{}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Go(func() {
			if err := svc.Erase(ctx, user); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		cached, _ := mustGet(t, svc, user)
		stored := mustStoreGet(t, h.Store, user)
		if _, ok := cached["phone"]; ok || !cached.Equal(stored) {
			t.Fatalf("round %d: the service reads %v, the store holds %v", round, cached, stored)
		}
		// A merge after the erasure starts from what the store holds.
		mustMerge(t, svc, user, patch("after", "1"))
		got, _ := mustGet(t, svc, user)
		stored = mustStoreGet(t, h.Store, user)
		if _, ok := got["phone"]; ok || !got.Equal(stored) {
			t.Fatalf("round %d, a merge after: the service reads %v, the store holds %v", round, got, stored)
		}
	}
}

// RunUnknownUserErasureTest checks that a store that knows its users
// refuses to erase one it does not know.
func RunUnknownUserErasureTest(t *testing.T, h Harness) {
	svc := newService(h.Store, userattrs.ReadCacheConfig{})
	if err := svc.Erase(context.Background(), h.UnknownUser); !errors.Is(err, userattrs.ErrUserNotFound) {
		t.Fatalf("erasing an unknown user: %v, want ErrUserNotFound", err)
	}
	if _, err := svc.Export(context.Background(), h.UnknownUser); !errors.Is(err, userattrs.ErrUserNotFound) {
		t.Fatalf("exporting an unknown user: %v, want ErrUserNotFound", err)
	}
}

// exported returns an export's attributes as attributes.
func exported(x *userattrs.Export) userattrs.Attributes {
	attrs := userattrs.Attributes{}
	for k, a := range x.Attributes {
		attrs[k] = a.Values
	}
	return attrs
}
