package conformance

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
)

// RunHistoryTests checks the history of a store that declares one: every
// change commits with exactly one record, in commit order, and nothing
// else leaves one.
func RunHistoryTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	origin := userattrs.Origin{Actor: "svc", ServiceAccount: true, ClientID: "backend", RequestID: "req-1"}
	history := func(t *testing.T, s userattrs.Store, user string, q userattrs.HistoryQuery) []userattrs.Record {
		t.Helper()
		if q.Limit == 0 {
			q.Limit = 1000
		}
		records, err := s.(userattrs.History).History(context.Background(), user, q)
		if err != nil {
			t.Fatalf("History: %v", err)
		}
		return records
	}

	t.Run("a change commits with its record, and nothing else leaves one", func(t *testing.T) {
		h, svc, user := begin(t, newHarness, userattrs.ReadCacheConfig{})
		ctx := userattrs.WithOrigin(context.Background(), origin)
		before := time.Now().Add(-time.Second)
		if err := svc.Merge(ctx, user, patch("a", "1", "b", []string{"x", "y"}), userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
		// Changes nothing: no record.
		if err := svc.Merge(ctx, user, patch("a", "1"), userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
		// Refused by its precondition, or by its updater, inside the
		// transaction: no record.
		if err := svc.Merge(ctx, user, patch("c", "3"), userattrs.IfMatch(false, []string{`"stale"`})); !errors.Is(err, userattrs.ErrPreconditionFailed) {
			t.Fatalf("stale If-Match: %v", err)
		}
		refuse := errors.New("refused")
		if err := h.Store.Update(ctx, user, func(userattrs.Attributes) (userattrs.Attributes, error) {
			return userattrs.Attributes{"z": {"1"}}, refuse
		}); !errors.Is(err, refuse) {
			t.Fatalf("refusing updater: %v", err)
		}
		if err := svc.Merge(ctx, user, patch("a", nil, "b", "z"), userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
		records := history(t, h.Store, user, userattrs.HistoryQuery{})
		if len(records) != 2 {
			t.Fatalf("%d records, want 2: %+v", len(records), records)
		}
		newest, first := records[0], records[1]
		wantAttributes(t, first.Set, userattrs.Attributes{"a": {"1"}, "b": {"x", "y"}})
		wantAttributes(t, newest.Set, userattrs.Attributes{"b": {"z"}})
		if !slices.Equal(newest.Removed, []string{"a"}) || len(first.Removed) != 0 {
			t.Errorf("removed: %q then %q", first.Removed, newest.Removed)
		}
		for _, r := range records {
			if r.User != user || r.Actor != (userattrs.Actor{Type: "service-account", ID: "svc"}) || r.ClientID != "backend" ||
				r.RequestID != "req-1" || r.ID == "" || r.Time.Before(before) || r.Time.After(time.Now().Add(time.Second)) {
				t.Errorf("record %+v", r)
			}
		}
		if newest.Seq <= first.Seq || newest.ID == first.ID {
			t.Errorf("seq %d then %d, ids %s and %s", first.Seq, newest.Seq, first.ID, newest.ID)
		}
		if other := history(t, h.Store, h.NewUser(t), userattrs.HistoryQuery{}); len(other) != 0 {
			t.Errorf("another user has %d records", len(other))
		}
	})

	t.Run("concurrent merges leave one record each, in commit order", func(t *testing.T) {
		h := newHarness(t)
		user := h.NewUser(t)
		stores := []userattrs.Store{h.Store}
		if h.Reopen != nil {
			stores = append(stores, h.Reopen(t))
		}
		// Each update counts up from what it was given: the records, in
		// their order, must count 1, 2, 3... with no gap and no repeat.
		increment := func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			n := 0
			if vs := cur["n"]; len(vs) == 1 {
				n, _ = strconv.Atoi(vs[0])
			}
			next := cur.Clone()
			next["n"] = []string{strconv.Itoa(n + 1)}
			return next, nil
		}
		const writers, each = 8, 15
		var wg sync.WaitGroup
		errs := make(chan error, writers*each)
		for w := range writers {
			wg.Go(func() {
				s := stores[w%len(stores)]
				for i := range each {
					ctx := userattrs.WithOrigin(context.Background(), userattrs.Origin{Actor: user, RequestID: fmt.Sprintf("%d-%d", w, i)})
					if err := s.Update(ctx, user, increment); err != nil {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		records := history(t, h.Store, user, userattrs.HistoryQuery{})
		if len(records) != writers*each {
			t.Fatalf("%d records for %d changes", len(records), writers*each)
		}
		requests := map[string]bool{}
		for i, r := range slices.Backward(records) {
			if got := r.Set["n"]; len(got) != 1 || got[0] != strconv.Itoa(len(records)-i) {
				t.Fatalf("record %d of the history set n=%q", len(records)-i, got)
			}
			requests[r.RequestID] = true
		}
		if len(requests) != writers*each {
			t.Errorf("%d distinct request ids for %d changes", len(requests), writers*each)
		}
	})

	t.Run("pages, keys and times select records", func(t *testing.T) {
		h, svc, user := begin(t, newHarness, userattrs.ReadCacheConfig{})
		for i := range 5 {
			mustMerge(t, svc, user, patch("k", strconv.Itoa(i)))
			mustMerge(t, svc, user, patch("other", strconv.Itoa(i)))
		}
		all := history(t, h.Store, user, userattrs.HistoryQuery{})
		page := history(t, h.Store, user, userattrs.HistoryQuery{Limit: 4})
		next := history(t, h.Store, user, userattrs.HistoryQuery{Limit: 4, Before: page[3].Seq})
		if len(all) != 10 || len(page) != 4 || len(next) != 4 || next[0].Seq != all[4].Seq {
			t.Fatalf("pages of %d and %d from %d", len(page), len(next), len(all))
		}
		keyed := history(t, h.Store, user, userattrs.HistoryQuery{Key: "k"})
		if len(keyed) != 5 || keyed[0].Set["k"][0] != "4" {
			t.Fatalf("key filter: %+v", keyed)
		}
		if got := history(t, h.Store, user, userattrs.HistoryQuery{Until: all[9].Time}); len(got) != 0 {
			t.Errorf("before the first change: %d records", len(got))
		}
		if got := history(t, h.Store, user, userattrs.HistoryQuery{Since: all[9].Time}); len(got) != 10 {
			t.Errorf("since the first change: %d records", len(got))
		}
		if got := history(t, h.Store, user, userattrs.HistoryQuery{Since: time.Now().Add(time.Minute)}); len(got) != 0 {
			t.Errorf("since a time to come: %d records", len(got))
		}
	})

	t.Run("a user's history keeps to its bounds", func(t *testing.T) {
		h := newHarness(t)
		if h.Bounded == nil {
			t.Fatal("a store with a history must give the suite a bounded one (Harness.Bounded)")
		}
		bounded := h.Bounded(t, userattrs.HistoryBounds{MaxRecords: 5, MaxBytes: 1 << 20})
		svc := newService(bounded, userattrs.ReadCacheConfig{})
		user, other := h.NewUser(t), h.NewUser(t)
		admin := userattrs.WithOrigin(context.Background(), origin)
		for i := range 8 {
			// Changes through the admin API count alike.
			merge := svc.Merge
			if i%2 == 1 {
				merge = svc.AdminMerge
			}
			if err := merge(admin, user, patch("k", strconv.Itoa(i)), userattrs.Precondition{}); err != nil {
				t.Fatal(err)
			}
		}
		mustMerge(t, svc, other, patch("k", "mine"))
		kept := history(t, bounded, user, userattrs.HistoryQuery{})
		if len(kept) != 5 || kept[0].Set["k"][0] != "7" || kept[4].Set["k"][0] != "3" {
			t.Fatalf("%d records kept, newest first: %+v; want the 5 newest, 7 to 3", len(kept), kept)
		}
		if got := history(t, bounded, other, userattrs.HistoryQuery{}); len(got) != 1 {
			t.Fatalf("another user's history: %d records", len(got))
		}
		// Pruning takes its records off the user's count: after it, the
		// bound counts from what is left.
		if _, err := bounded.(userattrs.History).PruneHistory(context.Background(), time.Now().Add(time.Second), 100); err != nil {
			t.Fatal(err)
		}
		for i := range 3 {
			mustMerge(t, svc, user, patch("k", "again"+strconv.Itoa(i)))
		}
		if got := history(t, bounded, user, userattrs.HistoryQuery{}); len(got) != 3 {
			t.Fatalf("after pruning everything and 3 changes: %d records", len(got))
		}

		// Bytes: records of a 1000-byte value, about 1,100 bytes each as
		// stored, of which 3,600 bytes hold 3.
		bytesBounded := h.Bounded(t, userattrs.HistoryBounds{MaxRecords: 1000, MaxBytes: 3600})
		svc = newService(bytesBounded, userattrs.ReadCacheConfig{})
		user = h.NewUser(t)
		for i := range 6 {
			mustMerge(t, svc, user, patch("k", strconv.Itoa(i)+strings.Repeat("x", 999)))
		}
		if kept := history(t, bytesBounded, user, userattrs.HistoryQuery{}); len(kept) != 3 || kept[0].Set["k"][0][0] != '5' {
			t.Fatalf("%d records kept under the byte bound, want the 3 newest", len(kept))
		}
	})

	t.Run("with the history off a change leaves no record, only its event", func(t *testing.T) {
		h := newHarness(t)
		off := h.Bounded(t, userattrs.HistoryBounds{Off: true})
		svc := newService(off, userattrs.ReadCacheConfig{})
		user := h.NewUser(t)
		mustMerge(t, svc, user, patch("a", "1"))
		mustMerge(t, svc, user, patch("a", "2"))
		if got, err := svc.Get(context.Background(), user); err != nil || got.Attributes()["a"][0] != "2" {
			t.Fatalf("attributes: %v %v", got, err)
		}
		if _, err := off.(userattrs.History).History(context.Background(), user, userattrs.HistoryQuery{Limit: 10}); !errors.Is(err, userattrs.ErrNoHistory) {
			t.Fatalf("History with the history off: %v, want ErrNoHistory", err)
		}
		x, err := svc.Export(context.Background(), user)
		if err != nil {
			t.Fatal(err)
		}
		if len(x.History) != 0 || len(x.Pending) != 2 || x.Pending[1].Set["a"][0] != "2" {
			t.Fatalf("export: %d records of history, pending events %+v; want none, and both changes' events", len(x.History), x.Pending)
		}
	})

	t.Run("pruning removes old records in steps", func(t *testing.T) {
		h, svc, user := begin(t, newHarness, userattrs.ReadCacheConfig{})
		for i := range 3 {
			mustMerge(t, svc, user, patch("k", strconv.Itoa(i)))
		}
		pruner := h.Store.(userattrs.History)
		if n, err := pruner.PruneHistory(context.Background(), time.Now().Add(-time.Hour), 100); err != nil || n != 0 {
			t.Fatalf("pruning before the records: %d, %v", n, err)
		}
		n, err := pruner.PruneHistory(context.Background(), time.Now().Add(time.Second), 2)
		if err != nil || n != 2 {
			t.Fatalf("pruning 2: %d, %v", n, err)
		}
		left := history(t, h.Store, user, userattrs.HistoryQuery{})
		if len(left) != 1 || left[0].Set["k"][0] != "2" {
			t.Fatalf("left after pruning: %+v", left)
		}
	})
}

// RunOutboxTests checks the outbox of a store opened with events on: each
// change's event, delivered oldest first per user, and removed once
// delivered; users held after a failure, or while a send goes on, are
// passed over until their hold ends, with their retry state; events that
// failed too long are parked, listed and put back ahead of their user's
// later events.
func RunOutboxTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	h, svc, user := begin(t, newHarness, userattrs.ReadCacheConfig{})
	outbox := h.Store.(userattrs.Outbox)
	ctx := context.Background()
	deliver := func(send func(userattrs.OutboxBatch) userattrs.Outcome) int {
		t.Helper()
		n, err := outbox.Deliver(ctx, 100, send)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	drain := func(send func(userattrs.OutboxBatch) userattrs.Outcome) {
		for deliver(send) > 0 {
		}
	}
	all := func(b userattrs.OutboxBatch) (o userattrs.Outcome) {
		for _, e := range b.Events {
			o.Delivered = append(o.Delivered, e.Seq)
		}
		return o
	}
	stats := func() userattrs.OutboxStats {
		t.Helper()
		s, err := outbox.OutboxStats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	drain(all) // what earlier tests left
	for i := range 5 {
		mustMerge(t, svc, user, patch("k", strconv.Itoa(i)))
	}
	if s := stats(); s.Depth != 5 || time.Since(s.Oldest) > time.Minute || s.Parked != 0 {
		t.Fatalf("stats: %+v", s)
	}
	// A sink that takes two events at a time: the rest come again, in
	// order, the next time.
	var got []string
	var ids []string
	drain(func(b userattrs.OutboxBatch) (o userattrs.Outcome) {
		for _, e := range b.Events[:min(2, len(b.Events))] {
			got = append(got, e.Set["k"][0])
			ids = append(ids, e.ID)
			o.Delivered = append(o.Delivered, e.Seq)
		}
		return o
	})
	if !slices.Equal(got, []string{"0", "1", "2", "3", "4"}) || len(slices.Compact(slices.Clone(ids))) != 5 {
		t.Fatalf("delivered %q", got)
	}
	history, err := h.Store.(userattrs.History).History(ctx, user, userattrs.HistoryQuery{Limit: 10})
	if err != nil || len(history) != 5 || history[0].ID != ids[4] {
		t.Fatalf("an event's id is its record's: %v, %v", err, history)
	}
	if s := stats(); s.Depth != 0 {
		t.Fatalf("after delivery %d events wait", s.Depth)
	}

	// The held user's events wait; another user's go on.
	other := h.NewUser(t)
	for i := range 3 {
		mustMerge(t, svc, user, patch("k", "held"+strconv.Itoa(i)))
	}
	mustMerge(t, svc, other, patch("k", "free"))
	since := time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	// On a shared store a claim takes one part of the users: claim until
	// none is left, holding the user at its first event.
	var first userattrs.Record
	var freed []string
	drain(func(b userattrs.OutboxBatch) (o userattrs.Outcome) {
		if len(b.Retries) != 0 {
			t.Fatalf("retries before any failure: %v", b.Retries)
		}
		holding := false
		for _, e := range b.Events {
			switch {
			case e.User == other:
				freed = append(freed, e.Set["k"][0])
				o.Delivered = append(o.Delivered, e.Seq)
			case holding:
			case first.ID != "":
				t.Fatalf("a held user's event was claimed: %+v", e)
			default:
				holding = true
				first = e
				o.Holds = []userattrs.Hold{{User: user, For: time.Hour, Attempts: 3, Since: since}}
			}
		}
		return o
	})
	if !slices.Equal(freed, []string{"free"}) || first.Set["k"][0] != "held0" {
		t.Fatalf("the other user's events went %q; the held user's first is %+v", freed, first)
	}
	// A short hold ends by itself, and the user comes back with its retry
	// state; Settle applies an outcome outside a claim.
	if err := outbox.Settle(ctx, userattrs.Outcome{Holds: []userattrs.Hold{{User: user, For: 50 * time.Millisecond, Attempts: 4, Since: since}}}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	deliver(func(b userattrs.OutboxBatch) (o userattrs.Outcome) {
		r, ok := b.Retries[user]
		if len(b.Events) != 3 || b.Events[0].ID != first.ID || !ok || r.Attempts != 4 || !r.Since.Equal(since) {
			t.Fatalf("after the hold: %d events, retry %+v (want 4 attempts since %v)", len(b.Events), b.Retries, since)
		}
		// The first keeps failing: it is parked, and the user's later
		// events go on.
		o.Parked = []userattrs.Parking{{Seq: first.Seq, Attempts: 5, Reason: "webhook answered 500"}}
		o.Released = []string{user}
		return o
	})
	if s := stats(); s.Depth != 2 || s.Parked != 1 {
		t.Fatalf("after parking: %+v", s)
	}
	parked, err := outbox.Parked(ctx, 0, 10)
	if err != nil || len(parked) != 1 {
		t.Fatalf("parked: %v, %+v", err, parked)
	}
	if p := parked[0]; p.Record.ID != first.ID || p.Record.User != user || p.Attempts != 5 || p.Reason != "webhook answered 500" ||
		time.Since(p.ParkedAt) > time.Minute || p.Record.Set["k"][0] != "held0" {
		t.Fatalf("parked event: %+v", p)
	}
	if more, err := outbox.Parked(ctx, parked[0].Seq, 10); err != nil || len(more) != 0 {
		t.Fatalf("the page after the last: %v, %+v", err, more)
	}
	var later []string
	deliver(func(b userattrs.OutboxBatch) (o userattrs.Outcome) {
		if len(b.Retries) != 0 {
			t.Fatalf("released, yet retries %+v", b.Retries)
		}
		// One of the two later events is taken; the other waits.
		later = append(later, b.Events[0].Set["k"][0])
		o.Delivered = []int64{b.Events[0].Seq}
		return o
	})
	// Sent again, the parked event goes out before the user's later one.
	if ok, err := outbox.Unpark(ctx, first.ID); err != nil || !ok {
		t.Fatalf("Unpark: %v, %v", ok, err)
	}
	if ok, err := outbox.Unpark(ctx, first.ID); err != nil || ok {
		t.Fatalf("Unpark of an event no longer parked: %v, %v", ok, err)
	}
	drain(func(b userattrs.OutboxBatch) userattrs.Outcome {
		for _, e := range b.Events {
			later = append(later, e.Set["k"][0])
		}
		return all(b)
	})
	if !slices.Equal(later, []string{"held1", "held0", "held2"}) {
		t.Fatalf("delivered %q, want held1, then the parked held0 ahead of held2", later)
	}
	if s := stats(); s.Depth != 0 || s.Parked != 0 {
		t.Fatalf("at the end: %+v", s)
	}
}
