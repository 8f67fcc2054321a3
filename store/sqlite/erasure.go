package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"time"

	"github.com/userattrs/userattrs"
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
		UNION SELECT user_id FROM attribute_history WHERE user_id > ?1
		ORDER BY user_id LIMIT ?2`
)

// Erase deletes everything of user's, and writes the erasure's record and
// event, in a transaction of the writer's, ordered among the user's merges
// as they are. The write connection runs with secure_delete on, so the
// deleted rows' bytes are overwritten in their pages; the WAL, which holds
// the pages as they were, is then checkpointed into the database file and
// truncated.
func (s *Store) Erase(ctx context.Context, user string, landed func()) error {
	if s.isClosed() {
		return userattrs.ErrClosed
	}
	e := &erasure{record: userattrs.NewErasure(user, userattrs.OriginOf(ctx)), landed: landed}
	if err := s.writes.Do(ctx, user, nil, e); err != nil {
		return err
	}
	return s.truncateWAL(ctx)
}

// erasure is an erasure waiting for the writer, as a Merge's Prepared.
type erasure struct {
	record userattrs.Record
	landed func()
}

// erase applies an erasure in the batch's transaction. The records of the
// user's changes earlier in the batch, not yet written, go with the rest;
// the user's merges later in the batch start from no attributes.
func (r *batchRow) erase(ctx context.Context, e *erasure) error {
	user := e.record.User
	r.journal.Records = slices.DeleteFunc(r.journal.Records, func(rec userattrs.Record) bool { return rec.User == user && !rec.Erased })
	for _, q := range eraseUser {
		if _, err := r.tx.ExecContext(ctx, q, user); err != nil {
			r.failed = mapError(err)
			return r.failed
		}
	}
	r.journal.Add(&e.record)
	if _, err := r.tx.ExecContext(ctx, insertErasure, sqlstore.ErasureValues(&e.record)...); err != nil {
		r.failed = mapError(err)
		return r.failed
	}
	none := userattrs.Attributes{}
	r.pending[user], r.usages[user] = known{none, knownSize(user, none)}, sqlstore.Usage{}
	if e.landed != nil {
		e.landed()
	}
	return nil
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
