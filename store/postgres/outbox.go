package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var _ userattrs.Outbox = (*Store)(nil)

const (
	// notHeld: the event's user has no hold that keeps it waiting.
	notHeld = "NOT EXISTS (SELECT 1 FROM event_hold AS h WHERE h.user_id = o.user_id AND h.until > now())"
	// claimPart takes the lock of a part with events ready to go, that no
	// other dispatcher holds.
	claimPart = `SELECT p.part FROM event_outbox_part p
		WHERE EXISTS (SELECT 1 FROM event_outbox o WHERE o.part = p.part AND ` + notHeld + `)
		ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED`
	claimEvents   = "SELECT seq, record FROM event_outbox AS o WHERE part = $1 AND " + notHeld + " ORDER BY seq LIMIT $2"
	selectRetries = `SELECT user_id, attempts, since FROM event_hold WHERE attempts > 0 AND user_id = ANY($1)`
	parkEvents    = `WITH p AS (
			SELECT * FROM unnest($1::bigint[], $2::int[], $3::text[]) AS p(seq, attempts, reason)
		), gone AS (
			DELETE FROM event_outbox AS o USING p WHERE o.seq = p.seq
			RETURNING o.seq, o.user_id, o.part, o.at, o.record, p.attempts, p.reason
		)
		INSERT INTO event_parked (event_seq, id, user_id, part, at, parked_at, attempts, reason, record)
		SELECT seq, record::json->>'id', user_id, part, at, now(), attempts, reason, record FROM gone`
	holdUsers = `INSERT INTO event_hold (user_id, until, attempts, since)
		SELECT h.user_id, now() + h.wait * interval '1 millisecond', h.attempts, h.since
		FROM unnest($1::text[], $2::bigint[], $3::int[], $4::timestamptz[]) AS h(user_id, wait, attempts, since)
		ON CONFLICT (user_id) DO UPDATE SET until = excluded.until, attempts = excluded.attempts, since = excluded.since`
	selectParked = `SELECT seq, event_seq, record, parked_at, attempts, reason FROM event_parked
		WHERE seq > $1 ORDER BY seq LIMIT $2`
	unparkEvent = `WITH back AS (
			DELETE FROM event_parked WHERE id = $1 RETURNING event_seq, part, user_id, at, record
		), released AS (
			DELETE FROM event_hold WHERE user_id IN (SELECT user_id FROM back)
		)
		INSERT INTO event_outbox (seq, part, user_id, at, record) SELECT event_seq, part, user_id, at, record FROM back`
)

// Deliver claims one part of the outbox that has events ready and that no
// other dispatcher, on any instance, holds: its row lock, taken with SKIP
// LOCKED and held while the batch is sent, at most the dispatcher's batch
// wait, until its outcome is applied. A user's events are all in one
// part, so they go out in seq order, which is their commit order; a user
// held, on any instance, is passed over.
func (s *Store) Deliver(ctx context.Context, max int, send func(userattrs.OutboxBatch) userattrs.Outcome) (int, error) {
	if s.writes.Closed() {
		return 0, userattrs.ErrClosed
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, mapError(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var part int16
	err = tx.QueryRow(ctx, claimPart).Scan(&part)
	if err == pgx.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, mapError(err)
	}
	rows, _ := tx.Query(ctx, claimEvents, part, max)
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userattrs.Record, error) {
		var seq int64
		var data string
		if err := row.Scan(&seq, &data); err != nil {
			return userattrs.Record{}, err
		}
		return sqlstore.DecodeEvent(seq, data)
	})
	if err != nil || len(events) == 0 {
		return 0, mapError(err)
	}
	retries := map[string]userattrs.Retry{}
	rows, _ = tx.Query(ctx, selectRetries, sqlstore.Users(events))
	var user string
	var retry userattrs.Retry
	var since *time.Time
	_, err = pgx.ForEachRow(rows, []any{&user, &retry.Attempts, &since}, func() error {
		if since != nil {
			retry.Since = *since
		}
		retries[user] = retry
		return nil
	})
	if err != nil {
		return 0, mapError(err)
	}
	out := send(userattrs.OutboxBatch{Events: events, Retries: retries})
	if err := settle(ctx, tx, out); err != nil {
		return len(events), mapError(err)
	}
	return len(events), mapError(tx.Commit(ctx))
}

// Settle applies the outcome of sends that went on past their batch, under
// the holds their batch set, so without their part's lock.
func (s *Store) Settle(ctx context.Context, o userattrs.Outcome) error {
	if o.Empty() {
		return nil
	}
	return mapError(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error { return settle(ctx, tx, o) }))
}

// settle applies o in tx: removes the delivered events, parks events, and
// ends holds before it sets them.
func settle(ctx context.Context, tx pgx.Tx, o userattrs.Outcome) error {
	b := &pgx.Batch{}
	if len(o.Delivered) > 0 {
		b.Queue("DELETE FROM event_outbox WHERE seq = ANY($1)", o.Delivered)
	}
	if len(o.Parked) > 0 {
		seqs, attempts, reasons := make([]int64, len(o.Parked)), make([]int32, len(o.Parked)), make([]string, len(o.Parked))
		for i, p := range o.Parked {
			seqs[i], attempts[i], reasons[i] = p.Seq, int32(p.Attempts), p.Reason
		}
		b.Queue(parkEvents, seqs, attempts, reasons)
	}
	if len(o.Released) > 0 {
		b.Queue("DELETE FROM event_hold WHERE user_id = ANY($1)", o.Released)
	}
	if len(o.Holds) > 0 {
		n := len(o.Holds)
		users, waits, attempts, since := make([]string, n), make([]int64, n), make([]int32, n), make([]*time.Time, n)
		for i, h := range o.Holds {
			users[i], waits[i], attempts[i] = h.User, h.For.Milliseconds(), int32(h.Attempts)
			if !h.Since.IsZero() {
				since[i] = &h.Since
			}
		}
		b.Queue(holdUsers, users, waits, attempts, since)
	}
	if b.Len() == 0 {
		return nil
	}
	return tx.SendBatch(ctx, b).Close()
}

// OutboxStats reports how many events wait, since when, and how many are
// parked.
func (s *Store) OutboxStats(ctx context.Context) (userattrs.OutboxStats, error) {
	var stats userattrs.OutboxStats
	var oldest *time.Time
	err := s.pool.QueryRow(ctx, "SELECT count(*), min(at), (SELECT count(*) FROM event_parked) FROM event_outbox").
		Scan(&stats.Depth, &oldest, &stats.Parked)
	if oldest != nil {
		stats.Oldest = *oldest
	}
	return stats, mapError(err)
}

// Parked returns a page of the parked events.
func (s *Store) Parked(ctx context.Context, after int64, limit int) ([]userattrs.ParkedEvent, error) {
	if s.writes.Closed() {
		return nil, userattrs.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, selectParked, after, limit)
	parked, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userattrs.ParkedEvent, error) {
		var p userattrs.ParkedEvent
		var eventSeq int64
		var data string
		if err := row.Scan(&p.Seq, &eventSeq, &data, &p.ParkedAt, &p.Attempts, &p.Reason); err != nil {
			return p, err
		}
		var err error
		p.Record, err = sqlstore.DecodeEvent(eventSeq, data)
		return p, err
	})
	return parked, mapError(err)
}

// Unpark puts a parked event back in the outbox under its old seq, ahead
// of its user's later events, and ends its user's hold.
func (s *Store) Unpark(ctx context.Context, id string) (bool, error) {
	if s.writes.Closed() {
		return false, userattrs.ErrClosed
	}
	tag, err := s.pool.Exec(ctx, unparkEvent, id)
	return tag.RowsAffected() == 1, mapError(err)
}
