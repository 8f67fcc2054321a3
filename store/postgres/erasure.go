package postgres

import (
	"context"

	"github.com/jackc/pgx/v5"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var (
	_ userattrs.Eraser    = (*Store)(nil)
	_ userattrs.Inventory = (*Store)(nil)
)

const (
	// lockUser takes the user's row lock, as a merge does, so that an
	// erasure waits for the merge of the user under way on any instance,
	// and the next merge waits for the erasure. eraseUser then deletes
	// everything of the user's: a statement of its own, whose snapshot
	// sees what that merge committed.
	lockUser  = "SELECT 1 FROM user_attributes WHERE user_id = $1 FOR UPDATE"
	eraseUser = `WITH attrs AS (DELETE FROM user_attributes WHERE user_id = $1),
		history AS (DELETE FROM attribute_history WHERE user_id = $1),
		outbox AS (DELETE FROM event_outbox WHERE user_id = $1),
		parked AS (DELETE FROM event_parked WHERE user_id = $1)
		DELETE FROM event_hold WHERE user_id = $1`
	insertErasure = `INSERT INTO user_erasure (id, user_id, at, actor_type, actor_id, client_id, request_id)
		VALUES ($1, $2, to_timestamp($3::bigint / 1000.0), $4, $5, $6, $7)`
	insertEvent    = "INSERT INTO event_outbox (part, user_id, at, record) VALUES ($1, $2, $3, $4)"
	selectErasures = `SELECT id, user_id, (extract(epoch FROM at) * 1000)::bigint, actor_type, actor_id, client_id, request_id
		FROM user_erasure WHERE user_id = $1 ORDER BY seq`
	selectPending = `SELECT seq, record FROM (SELECT seq, record FROM event_outbox WHERE user_id = $1
		UNION ALL SELECT event_seq, record FROM event_parked WHERE user_id = $1) AS p ORDER BY seq`
	// A user whose row holds nothing (every attribute removed, the
	// history pruned) has nothing to reconcile.
	selectUserIDs = `SELECT user_id FROM user_attributes WHERE user_id > $1 AND (attributes <> '{}' OR history_records > 0)
		ORDER BY user_id LIMIT $2`
)

// Erase deletes everything of user's in one transaction, with the record
// of the erasure and its event. PostgreSQL keeps the deleted rows' bytes
// in the table files until VACUUM reuses their space, and in the WAL
// until its segments are recycled (docs/privacy.md says what to run).
func (s *Store) Erase(ctx context.Context, user string, landed func()) error {
	if s.writes.Closed() {
		return userattrs.ErrClosed
	}
	rec := userattrs.NewErasure(user, userattrs.OriginOf(ctx))
	sqlstore.NewJournal().Add(&rec)
	return mapError(pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, lockUser, user); err != nil {
			return err
		}
		if landed != nil {
			landed()
		}
		if _, err := tx.Exec(ctx, eraseUser, user); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, insertErasure, sqlstore.ErasureValues(&rec)...); err != nil {
			return err
		}
		if !s.events {
			return nil
		}
		_, err := tx.Exec(ctx, insertEvent, int16(store.OutboxPartition(user)), user, rec.Time, sqlstore.EventData(&rec))
		return err
	}))
}

// Users returns a page of the users with attributes or history.
func (s *Store) Users(ctx context.Context, after string, limit int) ([]string, error) {
	if s.writes.Closed() {
		return nil, userattrs.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, selectUserIDs, after, min(limit, sqlstore.MaxUsersPage))
	users, err := pgx.CollectRows(rows, pgx.RowTo[string])
	return users, mapError(err)
}

// Pending returns the user's events waiting in the outbox and parked.
func (s *Store) Pending(ctx context.Context, user string) ([]userattrs.Record, error) {
	if s.writes.Closed() {
		return nil, userattrs.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, selectPending, user)
	var seq int64
	var data string
	var events []userattrs.Record
	_, err := pgx.ForEachRow(rows, []any{&seq, &data}, func() error {
		r, err := sqlstore.DecodeEvent(seq, data)
		events = append(events, r)
		return err
	})
	return events, mapError(err)
}

// Erasures returns the records of the user's erasures.
func (s *Store) Erasures(ctx context.Context, user string) ([]userattrs.Record, error) {
	if s.writes.Closed() {
		return nil, userattrs.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, selectErasures, user)
	erasures, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (userattrs.Record, error) { return sqlstore.ScanErasure(row.Scan) })
	return erasures, mapError(err)
}
