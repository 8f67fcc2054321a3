package sqlite

import (
	"context"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var _ userattrs.History = (*Store)(nil)

const selectHistory = `SELECT ` + sqlstore.HistoryColumns + ` FROM attribute_history
	WHERE user_id = ?1 AND seq < ?2 AND (?3 = 0 OR at_ms >= ?3) AND (?4 = 0 OR at_ms < ?4)
	AND (?5 = '' OR EXISTS (SELECT 1 FROM json_each(changed_keys) WHERE value = ?5))
	ORDER BY seq DESC LIMIT ?6`

// History returns the records of user that q selects, newest first, from
// the read pool.
func (s *Store) History(ctx context.Context, user string, q userattrs.HistoryQuery) ([]userattrs.Record, error) {
	if s.isClosed() {
		return nil, userattrs.ErrClosed
	}
	if s.bounds.Off {
		return nil, userattrs.ErrNoHistory
	}
	rows, err := s.read.QueryContext(ctx, selectHistory, user, sqlstore.PageStart(q), unixMilli(q.Since), unixMilli(q.Until), q.Key,
		min(q.Limit, sqlstore.MaxHistoryPage))
	if err != nil {
		return nil, mapError(err)
	}
	defer rows.Close()
	var records []userattrs.Record
	for rows.Next() {
		r, err := sqlstore.ScanRecord(rows.Scan)
		if err != nil {
			return nil, mapError(err)
		}
		records = append(records, r)
	}
	return records, mapError(rows.Err())
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

// PruneHistory removes those of the limit oldest records that are older
// than before, and has the writer count those users' histories afresh, in a short
// transaction of the write connection's, between the writer's batches.
// The one writer stamps records in seq order, so the oldest by seq are the
// oldest: pruning reads at most limit rows, and a clock that stepped back
// keeps a record a little longer, never drops one early.
func (s *Store) PruneHistory(ctx context.Context, before time.Time, limit int) (removed int, err error) {
	if s.isClosed() {
		return 0, userattrs.ErrClosed
	}
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return 0, mapError(err)
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, `DELETE FROM attribute_history WHERE seq IN
		(SELECT seq FROM (SELECT seq, at_ms FROM attribute_history ORDER BY seq LIMIT ?2) WHERE at_ms < ?1)
		RETURNING user_id`, before.UnixMilli(), limit)
	if err != nil {
		return 0, mapError(err)
	}
	gone := map[string]bool{} // users whose records went
	for rows.Next() {
		var user string
		if err := rows.Scan(&user); err != nil {
			rows.Close()
			return 0, mapError(err)
		}
		gone[user] = true
		removed++
	}
	if err := rows.Close(); err != nil {
		return 0, mapError(err)
	}
	// Before the commit: the writer's next batch, which waits for this
	// transaction's end, must count these users afresh.
	s.known.forgetUsages(gone)
	return removed, mapError(tx.Commit())
}

// CursorKey returns the key of the history's cursors, which migration 6
// made.
func (s *Store) CursorKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := s.read.QueryRowContext(ctx, "SELECT cursor_key FROM store_key WHERE id = 1").Scan(&key)
	return key, mapError(err)
}
