package memory

import (
	"context"
	"crypto/rand"
	"math"
	"slices"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var (
	_ userattrs.History = (*Store)(nil)
	_ userattrs.Outbox  = (*Store)(nil)
)

// journal is the history and the outbox, kept under the store's lock, as
// the SQL stores keep them in the transaction of each change.
type journal struct {
	seq       int64
	history   map[string][]entry // by user, oldest first
	usage     map[string]sqlstore.Usage
	cursorKey []byte
	outbox    []userattrs.Record // oldest first
	holds     map[string]hold
	parked    []userattrs.ParkedEvent
	parkSeq   int64
	erasures  map[string][]userattrs.Record
}

type entry struct {
	rec  userattrs.Record
	size int64
}

type hold struct {
	until time.Time
	retry userattrs.Retry
}

func newJournal() journal {
	key := make([]byte, 16)
	rand.Read(key)
	return journal{history: map[string][]entry{}, usage: map[string]sqlstore.Usage{}, cursorKey: key, holds: map[string]hold{},
		erasures: map[string][]userattrs.Record{}}
}

// record adds a change's record, drops the user's oldest past the bounds,
// and queues its event when events are on. The caller holds the lock.
func (j *journal) record(rec userattrs.Record, cfg Config) {
	j.seq++
	rec.Seq, rec.Time = j.seq, time.Now().Truncate(time.Millisecond).UTC()
	if cfg.Events {
		j.outbox = append(j.outbox, rec)
	}
	if cfg.HistoryBounds.Off {
		return
	}
	size := sqlstore.Columns(&rec).Size // as the SQL stores count it
	kept := rec
	kept.TraceParent = "" // the event's, not the history's
	h := append(j.history[rec.User], entry{kept, size})
	u := j.usage[rec.User].With(size)
	for len(h) > 0 && u.Over(cfg.HistoryBounds) {
		u.Records, u.Bytes = u.Records-1, u.Bytes-h[0].size
		h = h[1:]
	}
	j.history[rec.User], j.usage[rec.User] = h, u
}

// History returns the records of user that q selects, newest first.
func (s *Store) History(ctx context.Context, user string, q userattrs.HistoryQuery) ([]userattrs.Record, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, userattrs.ErrClosed
	}
	if s.cfg.HistoryBounds.Off {
		return nil, userattrs.ErrNoHistory
	}
	before, limit := sqlstore.PageStart(q), min(q.Limit, sqlstore.MaxHistoryPage)
	var page []userattrs.Record
	h := s.history[user]
	for i := len(h) - 1; i >= 0 && len(page) < limit; i-- {
		r := h[i].rec
		_, set := r.Set[q.Key]
		switch {
		case r.Seq >= before, !q.Since.IsZero() && r.Time.Before(q.Since), !q.Until.IsZero() && !r.Time.Before(q.Until),
			q.Key != "" && !set && !slices.Contains(r.Removed, q.Key):
			continue
		}
		page = append(page, r)
	}
	return page, nil
}

// PruneHistory removes up to limit of the oldest records older than
// before.
func (s *Store) PruneHistory(ctx context.Context, before time.Time, limit int) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, userattrs.ErrClosed
	}
	var old []int64
	for _, h := range s.history {
		for _, e := range h {
			if e.rec.Time.Before(before) {
				old = append(old, e.rec.Seq)
			}
		}
	}
	slices.Sort(old)
	old = old[:min(limit, len(old))]
	through := int64(math.MinInt64)
	if len(old) > 0 {
		through = old[len(old)-1]
	}
	for user, h := range s.history {
		u := s.usage[user]
		for len(h) > 0 && h[0].rec.Seq <= through && h[0].rec.Time.Before(before) {
			u.Records, u.Bytes = u.Records-1, u.Bytes-h[0].size
			h = h[1:]
		}
		s.history[user], s.usage[user] = h, u
	}
	return len(old), nil
}

// CursorKey returns the key the store made when it was opened.
func (s *Store) CursorKey(context.Context) ([]byte, error) { return s.cursorKey, nil }

// Deliver passes the oldest events of users no hold keeps waiting to send,
// one dispatcher at a time, and applies its outcome.
func (s *Store) Deliver(ctx context.Context, max int, send func(userattrs.OutboxBatch) userattrs.Outcome) (int, error) {
	s.delivering.Lock()
	defer s.delivering.Unlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return 0, userattrs.ErrClosed
	}
	now := time.Now()
	b := userattrs.OutboxBatch{Retries: map[string]userattrs.Retry{}}
	for _, e := range s.outbox {
		if len(b.Events) == max {
			break
		}
		h, held := s.holds[e.User]
		if held && now.Before(h.until) {
			continue
		}
		b.Events = append(b.Events, e)
		if held && h.retry.Attempts > 0 {
			b.Retries[e.User] = h.retry
		}
	}
	s.mu.Unlock()
	if len(b.Events) == 0 {
		return 0, nil
	}
	return len(b.Events), s.Settle(ctx, send(b))
}

// Settle applies a dispatcher's outcome.
func (s *Store) Settle(_ context.Context, o userattrs.Outcome) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return userattrs.ErrClosed
	}
	now := time.Now()
	s.outbox = slices.DeleteFunc(s.outbox, func(e userattrs.Record) bool {
		if slices.Contains(o.Delivered, e.Seq) {
			return true
		}
		i := slices.IndexFunc(o.Parked, func(p userattrs.Parking) bool { return p.Seq == e.Seq })
		if i < 0 {
			return false
		}
		s.parkSeq++
		s.parked = append(s.parked, userattrs.ParkedEvent{Seq: s.parkSeq, Record: e, ParkedAt: now,
			Attempts: o.Parked[i].Attempts, Reason: o.Parked[i].Reason})
		return true
	})
	for _, u := range o.Released {
		delete(s.holds, u)
	}
	for _, h := range o.Holds {
		s.holds[h.User] = hold{until: now.Add(h.For), retry: userattrs.Retry{Attempts: h.Attempts, Since: h.Since}}
	}
	return nil
}

// OutboxStats reports how many events wait, since when, and how many are
// parked.
func (s *Store) OutboxStats(context.Context) (userattrs.OutboxStats, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	stats := userattrs.OutboxStats{Depth: len(s.outbox), Parked: len(s.parked)}
	if len(s.outbox) > 0 {
		stats.Oldest = s.outbox[0].Time
	}
	return stats, nil
}

// Parked returns a page of the parked events.
func (s *Store) Parked(_ context.Context, after int64, limit int) ([]userattrs.ParkedEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i, _ := slices.BinarySearchFunc(s.parked, after+1, func(p userattrs.ParkedEvent, seq int64) int { return int(p.Seq - seq) })
	return slices.Clone(s.parked[i:min(len(s.parked), i+limit)]), nil
}

// Unpark puts a parked event back in the outbox in its seq's place, ahead
// of its user's later events, and ends its user's hold.
func (s *Store) Unpark(_ context.Context, id string) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := slices.IndexFunc(s.parked, func(p userattrs.ParkedEvent) bool { return p.Record.ID == id })
	if i < 0 {
		return false, nil
	}
	e := s.parked[i].Record
	s.parked = slices.Delete(s.parked, i, i+1)
	at, _ := slices.BinarySearchFunc(s.outbox, e.Seq, func(r userattrs.Record, seq int64) int { return int(r.Seq - seq) })
	s.outbox = slices.Insert(s.outbox, at, e)
	delete(s.holds, e.User)
	return true, nil
}
