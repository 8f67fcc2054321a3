package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var (
	_ userattrs.Eraser    = (*Store)(nil)
	_ userattrs.Inventory = (*Store)(nil)
)

// eraseUser are what an erasure deletes: everything of the user's.
var eraseUser = []string{
	"DELETE FROM user_attribute WHERE user_id = ?",
	"DELETE FROM attribute_history WHERE user_id = ?",
	"DELETE FROM history_usage WHERE user_id = ?",
	"DELETE FROM event_outbox WHERE user_id = ?",
	"DELETE FROM event_parked WHERE user_id = ?",
	"DELETE FROM event_hold WHERE user_id = ?",
}

const (
	insertErasure  = "INSERT INTO user_erasure (" + sqlstore.ErasureColumns + ") VALUES (?, ?, ?, ?, ?, ?, ?)"
	selectErasures = "SELECT " + sqlstore.ErasureColumns + " FROM user_erasure WHERE user_id = ? ORDER BY seq"
	selectPending  = `SELECT seq, record FROM (SELECT seq, record FROM event_outbox WHERE user_id = ?1
		UNION ALL SELECT event_seq, record FROM event_parked WHERE user_id = ?1) ORDER BY seq`
	selectUsers = `SELECT user_id FROM user_attribute WHERE user_id > ?1
		UNION SELECT user_id FROM history_usage WHERE user_id > ?1 AND records > 0
		ORDER BY user_id LIMIT ?2`
)

// Erase deletes everything of user's in one transaction of the write
// connection's, between the writer's batches, with its record and event.
// The write connection runs with secure_delete on, so the deleted rows'
// bytes are overwritten in their pages; the WAL, which holds the pages
// as they were, is then checkpointed into the database file and truncated.
func (s *Store) Erase(ctx context.Context, user string) error {
	if s.isClosed() {
		return userattrs.ErrClosed
	}
	rec := userattrs.NewErasure(user, userattrs.OriginOf(ctx))
	sqlstore.NewJournal().Add(&rec)
	if err := s.erase(ctx, &rec); err != nil {
		return mapError(err)
	}
	return s.truncateWAL(ctx)
}

func (s *Store) erase(ctx context.Context, rec *userattrs.Record) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	for _, q := range eraseUser {
		if _, err := tx.ExecContext(ctx, q, rec.User); err != nil {
			return err
		}
	}
	if _, err := tx.ExecContext(ctx, insertErasure, sqlstore.ErasureValues(rec)...); err != nil {
		return err
	}
	if s.eventsOn {
		if _, err := tx.ExecContext(ctx, insertEvents+eventValues, store.OutboxPartition(rec.User), rec.User, rec.Time.UnixMilli(),
			sqlstore.EventData(rec)); err != nil {
			return err
		}
	}
	// Before the commit, while this transaction holds the one write
	// connection: no batch can begin and learn the attributes again
	// before the writer forgets them.
	s.known.remove(rec.User)
	return tx.Commit()
}

// truncateWAL copies the WAL into the database file and truncates it. A
// reader still on an old snapshot keeps it from finishing; it is tried
// again for a while, as such reads are short.
func (s *Store) truncateWAL(ctx context.Context) error {
	for range 50 {
		var busy, logFrames, checkpointed int
		if err := s.write.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logFrames, &checkpointed); err != nil {
			return mapError(err)
		}
		if busy == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return mapError(ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return fmt.Errorf("%w: sqlite: the erasure is committed, but readers kept the WAL from being truncated", userattrs.ErrUnavailable)
}

// Users returns a page of the users with attributes or history.
func (s *Store) Users(ctx context.Context, after string, limit int) ([]string, error) {
	if s.isClosed() {
		return nil, userattrs.ErrClosed
	}
	rows, err := s.read.QueryContext(ctx, selectUsers, after, min(limit, sqlstore.MaxUsersPage))
	if err != nil {
		return nil, mapError(err)
	}
	return collect(rows, func(rows *sql.Rows) (string, error) {
		var user string
		return user, rows.Scan(&user)
	})
}

// Pending returns the user's events waiting in the outbox and parked.
func (s *Store) Pending(ctx context.Context, user string) ([]userattrs.Record, error) {
	if s.isClosed() {
		return nil, userattrs.ErrClosed
	}
	rows, err := s.read.QueryContext(ctx, selectPending, user)
	if err != nil {
		return nil, mapError(err)
	}
	return scanEvents(rows)
}

// Erasures returns the records of the user's erasures.
func (s *Store) Erasures(ctx context.Context, user string) ([]userattrs.Record, error) {
	if s.isClosed() {
		return nil, userattrs.ErrClosed
	}
	rows, err := s.read.QueryContext(ctx, selectErasures, user)
	if err != nil {
		return nil, mapError(err)
	}
	return collect(rows, func(rows *sql.Rows) (userattrs.Record, error) { return sqlstore.ScanErasure(rows.Scan) })
}

// collect reads every row of rows with scan, and closes them.
func collect[T any](rows *sql.Rows, scan func(*sql.Rows) (T, error)) ([]T, error) {
	defer rows.Close()
	var all []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, mapError(err)
		}
		all = append(all, v)
	}
	return all, mapError(rows.Err())
}
