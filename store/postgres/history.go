package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var (
	_ userattrs.History = (*Store)(nil)
	_ userattrs.Outbox  = (*Store)(nil)
)

const (
	// The records and events of a batch go in with its write, in the
	// order the batch made its changes: each after its user's row lock,
	// so that seq orders each user's changes as they commit.
	insertRecords = `INSERT INTO attribute_history (id, user_id, at, actor_type, actor_id, client_id, request_id,
		set_values, removed_keys, changed_keys)
		SELECT r.id, r.user_id, $3, r.actor_type, r.actor_id, r.client_id, r.request_id, r.set_values, r.removed_keys,
			ARRAY(SELECT jsonb_array_elements_text(r.changed::jsonb))
		FROM unnest($1::text[], $2::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[])
			WITH ORDINALITY AS r(id, user_id, actor_type, actor_id, client_id, request_id, set_values, removed_keys, changed, n)
		ORDER BY r.n`
	insertEvents = `INSERT INTO event_outbox (part, at, record)
		SELECT e.part, $2, e.record FROM unnest($1::smallint[], $3::text[]) WITH ORDINALITY AS e(part, record, n) ORDER BY e.n`
	selectHistory = `SELECT seq, id, user_id, (extract(epoch FROM at) * 1000)::bigint AS at_ms, actor_type, actor_id,
		client_id, request_id, set_values, removed_keys FROM attribute_history
		WHERE user_id = $1 AND ($2 = 0 OR seq < $2) AND ($3::timestamptz IS NULL OR at >= $3)
		AND ($4::timestamptz IS NULL OR at < $4) AND ($5 = '' OR $5 = ANY(changed_keys))
		ORDER BY seq DESC LIMIT $6`
)

// queueJournal adds the writes of a batch's records to its pipeline.
func (s *Store) queueJournal(write *pgx.Batch, j *sqlstore.Journal) {
	n := len(j.Records)
	if n == 0 {
		return
	}
	cols := make([][]string, 9)
	for i := range cols {
		cols[i] = make([]string, 0, n)
	}
	parts, events := make([]int16, 0, n), make([]string, 0, n)
	for i := range j.Records {
		rec := &j.Records[i]
		c := sqlstore.Columns(rec)
		for k, v := range []string{rec.ID, rec.User, c.ActorType, c.ActorID, rec.ClientID, rec.RequestID, c.Set, c.Removed, c.Changed} {
			cols[k] = append(cols[k], v)
		}
		if s.events {
			parts = append(parts, int16(userattrs.OutboxPartition(rec.User)))
			events = append(events, sqlstore.EventData(rec))
		}
	}
	at := j.Records[0].Time
	write.Queue(insertRecords, cols[0], cols[1], at, cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8])
	if s.events {
		write.Queue(insertEvents, parts, at, events)
	}
}

// History returns the records of user that q selects, newest first.
func (s *Store) History(ctx context.Context, user string, q userattrs.HistoryQuery) ([]userattrs.Record, error) {
	if s.writes.Closed() {
		return nil, userattrs.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, selectHistory, user, q.Before, optionalTime(q.Since), optionalTime(q.Until), q.Key,
		min(q.Limit, sqlstore.MaxHistoryPage))
	records, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userattrs.Record, error) {
		return sqlstore.ScanRecord(row.Scan)
	})
	return records, mapError(err)
}

func optionalTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// PruneHistory removes up to limit records older than before, in a
// transaction of its own that locks only the rows it removes.
func (s *Store) PruneHistory(ctx context.Context, before time.Time, limit int) (int, error) {
	if s.writes.Closed() {
		return 0, userattrs.ErrClosed
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM attribute_history WHERE seq IN
		(SELECT seq FROM attribute_history WHERE at < $1 ORDER BY at LIMIT $2 FOR UPDATE SKIP LOCKED)`, before, limit)
	return int(tag.RowsAffected()), mapError(err)
}

// Deliver claims one part of the outbox that has events and that no other
// dispatcher, on any instance, holds: its row lock, taken with SKIP LOCKED
// and held until the delivered events are deleted. A user's events are all
// in one part, so they go out in seq order, which is their commit order.
func (s *Store) Deliver(ctx context.Context, max int, send func([]userattrs.Record) []bool) (int, error) {
	if s.writes.Closed() {
		return 0, userattrs.ErrClosed
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return 0, mapError(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var part int16
	err = tx.QueryRow(ctx, `SELECT p.part FROM event_outbox_part p
		WHERE EXISTS (SELECT 1 FROM event_outbox o WHERE o.part = p.part)
		ORDER BY random() LIMIT 1 FOR UPDATE SKIP LOCKED`).Scan(&part)
	if err == pgx.ErrNoRows {
		return 0, nil
	}
	if err != nil {
		return 0, mapError(err)
	}
	rows, _ := tx.Query(ctx, "SELECT seq, record FROM event_outbox WHERE part = $1 ORDER BY seq LIMIT $2", part, max)
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
	seqs := sqlstore.Done(events, send(events))
	if len(seqs) == 0 {
		return len(events), nil
	}
	if _, err := tx.Exec(ctx, "DELETE FROM event_outbox WHERE seq = ANY($1)", seqs); err != nil {
		return len(events), mapError(err)
	}
	return len(events), mapError(tx.Commit(ctx))
}

// OutboxStats reports how many events wait, and since when.
func (s *Store) OutboxStats(ctx context.Context) (int, time.Time, error) {
	var depth int
	var oldest *time.Time
	if err := s.pool.QueryRow(ctx, "SELECT count(*), min(at) FROM event_outbox").Scan(&depth, &oldest); err != nil {
		return 0, time.Time{}, mapError(err)
	}
	if oldest == nil {
		return depth, time.Time{}, nil
	}
	return depth, *oldest, nil
}
