package memory

import (
	"context"
	"maps"
	"slices"
	"time"

	"github.com/userattrs/userattrs"
)

var (
	_ userattrs.Eraser    = (*Store)(nil)
	_ userattrs.Inventory = (*Store)(nil)
)

// Erase drops everything of user's under the store's lock, keeps the
// record of the erasure and queues its event when events are on.
func (s *Store) Erase(ctx context.Context, user string, landed func()) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return userattrs.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	delete(s.users, user)
	delete(s.history, user)
	delete(s.usage, user)
	delete(s.holds, user)
	ofUser := func(r userattrs.Record) bool { return r.User == user }
	s.outbox = slices.DeleteFunc(s.outbox, ofUser)
	s.parked = slices.DeleteFunc(s.parked, func(p userattrs.ParkedEvent) bool { return ofUser(p.Record) })
	rec := userattrs.NewErasure(user, userattrs.OriginOf(ctx))
	s.seq++
	rec.Seq, rec.Time = s.seq, time.Now().Truncate(time.Millisecond).UTC()
	kept := rec
	kept.TraceParent = ""
	s.erasures[user] = append(s.erasures[user], kept)
	if s.cfg.Events {
		s.outbox = append(s.outbox, rec)
	}
	if landed != nil {
		landed()
	}
	return nil
}

// Users returns a page of the users with attributes or history.
func (s *Store) Users(_ context.Context, after string, limit int) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kept := map[string]bool{}
	for u, a := range s.users {
		kept[u] = len(a) > 0
	}
	for u, h := range s.history {
		kept[u] = kept[u] || len(h) > 0
	}
	var users []string
	for _, u := range slices.Sorted(maps.Keys(kept)) {
		if u > after && kept[u] && len(users) < limit {
			users = append(users, u)
		}
	}
	return users, nil
}

// Pending returns the user's waiting and parked events, oldest first.
func (s *Store) Pending(_ context.Context, user string) ([]userattrs.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var pending []userattrs.Record
	for _, e := range s.outbox {
		if e.User == user {
			pending = append(pending, e)
		}
	}
	for _, p := range s.parked {
		if p.Record.User == user {
			pending = append(pending, p.Record)
		}
	}
	slices.SortFunc(pending, func(a, b userattrs.Record) int { return int(a.Seq - b.Seq) })
	return pending, nil
}

// Erasures returns the records of the user's erasures.
func (s *Store) Erasures(_ context.Context, user string) ([]userattrs.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.erasures[user]), nil
}
