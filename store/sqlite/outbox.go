package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var _ userattrs.Outbox = (*Store)(nil)

const (
	// claimEvents takes the oldest events of users no hold keeps waiting.
	claimEvents = `SELECT seq, record FROM event_outbox AS o
		WHERE NOT EXISTS (SELECT 1 FROM event_hold AS h WHERE h.user_id = o.user_id AND h.until_ms > ?1)
		ORDER BY seq LIMIT ?2`
	selectRetries = `SELECT user_id, attempts, since_ms FROM event_hold
		WHERE attempts > 0 AND user_id IN (SELECT value FROM json_each(?))`
	deleteEvents = "DELETE FROM event_outbox WHERE seq IN (SELECT value FROM json_each(?))"
	parkEvent    = `INSERT INTO event_parked (event_seq, id, user_id, part, at_ms, parked_ms, attempts, reason, record)
		SELECT seq, json_extract(record, '$.id'), user_id, part, at_ms, ?2, ?3, ?4, record FROM event_outbox WHERE seq = ?1`
	releaseUsers = "DELETE FROM event_hold WHERE user_id IN (SELECT value FROM json_each(?))"
	holdUser     = `INSERT INTO event_hold (user_id, until_ms, attempts, since_ms) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET until_ms = excluded.until_ms, attempts = excluded.attempts, since_ms = excluded.since_ms`
	selectParked = `SELECT seq, event_seq, record, parked_ms, attempts, reason FROM event_parked
		WHERE seq > ? ORDER BY seq LIMIT ?`
	unparkEvent = `INSERT INTO event_outbox (seq, part, user_id, at_ms, record)
		SELECT event_seq, part, user_id, at_ms, record FROM event_parked WHERE id = ? RETURNING user_id`
)

// Deliver passes the oldest events of users no hold keeps waiting to send.
// This process is the file's only writer, and its one writer commits
// events in seq order, so one dispatcher at a time claims them all in that
// order.
func (s *Store) Deliver(ctx context.Context, max int, send func(userattrs.OutboxBatch) userattrs.Outcome) (int, error) {
	if s.isClosed() {
		return 0, userattrs.ErrClosed
	}
	s.delivering.Lock()
	defer s.delivering.Unlock()
	rows, err := s.read.QueryContext(ctx, claimEvents, time.Now().UnixMilli(), max)
	if err != nil {
		return 0, mapError(err)
	}
	events, err := scanEvents(rows)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	retries, err := s.retries(ctx, events)
	if err != nil {
		return 0, err
	}
	return len(events), s.Settle(ctx, send(userattrs.OutboxBatch{Events: events, Retries: retries}))
}

func scanEvents(rows *sql.Rows) ([]userattrs.Record, error) {
	defer rows.Close()
	var events []userattrs.Record
	var seq int64
	var data string
	for rows.Next() {
		if err := rows.Scan(&seq, &data); err != nil {
			return nil, mapError(err)
		}
		r, err := sqlstore.DecodeEvent(seq, data)
		if err != nil {
			return nil, err
		}
		events = append(events, r)
	}
	return events, mapError(rows.Err())
}

// retries reads the delivery state of the users of events that failed
// before.
func (s *Store) retries(ctx context.Context, events []userattrs.Record) (map[string]userattrs.Retry, error) {
	rows, err := s.read.QueryContext(ctx, selectRetries, sqlstore.JSONStrings(sqlstore.Users(events)))
	if err != nil {
		return nil, mapError(err)
	}
	defer rows.Close()
	retries := map[string]userattrs.Retry{}
	for rows.Next() {
		var user string
		var attempts int
		var since int64
		if err := rows.Scan(&user, &attempts, &since); err != nil {
			return nil, mapError(err)
		}
		retries[user] = userattrs.Retry{Attempts: attempts, Since: fromUnixMilli(since)}
	}
	return retries, mapError(rows.Err())
}

// Settle applies a dispatcher's outcome in one transaction of the write
// connection's, between the writer's batches. On a full disk it gives up
// the reserve rather than send delivered events again and again.
func (s *Store) Settle(ctx context.Context, o userattrs.Outcome) error {
	if o.Empty() {
		return nil
	}
	err := s.settle(ctx, o)
	if isFull(err) && s.reserve.release() {
		s.reserve.full.Store(true)
		err = s.settle(ctx, o)
	}
	return mapError(err)
}

func (s *Store) settle(ctx context.Context, o userattrs.Outcome) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if len(o.Delivered) > 0 {
		if _, err := tx.ExecContext(ctx, deleteEvents, string(sqlstore.AppendSeqs(nil, o.Delivered))); err != nil {
			return err
		}
	}
	now := time.Now()
	for _, p := range o.Parked {
		if _, err := tx.ExecContext(ctx, parkEvent, p.Seq, now.UnixMilli(), p.Attempts, p.Reason); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, "DELETE FROM event_outbox WHERE seq = ?", p.Seq); err != nil {
			return err
		}
	}
	if len(o.Released) > 0 {
		if _, err := tx.ExecContext(ctx, releaseUsers, sqlstore.JSONStrings(o.Released)); err != nil {
			return err
		}
	}
	for _, h := range o.Holds {
		if _, err := tx.ExecContext(ctx, holdUser, h.User, now.Add(h.For).UnixMilli(), h.Attempts, unixMilli(h.Since)); err != nil {
			return err
		}
	}
	return tx.Commit()
}

// OutboxStats reports how many events wait, since when, and how many are
// parked.
func (s *Store) OutboxStats(ctx context.Context) (userattrs.OutboxStats, error) {
	var stats userattrs.OutboxStats
	var oldest sql.NullInt64
	err := s.read.QueryRowContext(ctx, "SELECT count(*), min(at_ms), (SELECT count(*) FROM event_parked) FROM event_outbox").
		Scan(&stats.Depth, &oldest, &stats.Parked)
	if oldest.Valid {
		stats.Oldest = time.UnixMilli(oldest.Int64)
	}
	return stats, mapError(err)
}

// Parked returns a page of the parked events.
func (s *Store) Parked(ctx context.Context, after int64, limit int) ([]userattrs.ParkedEvent, error) {
	if s.isClosed() {
		return nil, userattrs.ErrClosed
	}
	rows, err := s.read.QueryContext(ctx, selectParked, after, limit)
	if err != nil {
		return nil, mapError(err)
	}
	defer rows.Close()
	var parked []userattrs.ParkedEvent
	for rows.Next() {
		var p userattrs.ParkedEvent
		var eventSeq, at int64
		var data string
		if err := rows.Scan(&p.Seq, &eventSeq, &data, &at, &p.Attempts, &p.Reason); err != nil {
			return nil, mapError(err)
		}
		if p.Record, err = sqlstore.DecodeEvent(eventSeq, data); err != nil {
			return nil, err
		}
		p.ParkedAt = time.UnixMilli(at)
		parked = append(parked, p)
	}
	return parked, mapError(rows.Err())
}

// Unpark puts a parked event back in the outbox under its old seq, ahead
// of its user's later events, and ends its user's hold.
func (s *Store) Unpark(ctx context.Context, id string) (bool, error) {
	if s.isClosed() {
		return false, userattrs.ErrClosed
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return false, mapError(err)
	}
	defer tx.Rollback()
	var user string
	switch err := tx.QueryRowContext(ctx, unparkEvent, id).Scan(&user); {
	case err == sql.ErrNoRows:
		return false, nil
	case err != nil:
		return false, mapError(err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM event_parked WHERE id = ?", id); err != nil {
		return false, mapError(err)
	}
	if _, err := tx.ExecContext(ctx, "DELETE FROM event_hold WHERE user_id = ?", user); err != nil {
		return false, mapError(err)
	}
	return true, mapError(tx.Commit())
}

func fromUnixMilli(ms int64) time.Time {
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
