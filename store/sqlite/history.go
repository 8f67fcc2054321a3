package sqlite

import (
	"context"
	"database/sql"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var (
	_ userattrs.History = (*Store)(nil)
	_ userattrs.Outbox  = (*Store)(nil)
)

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
// than before, and takes them off their users' history usage, in a short
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
		RETURNING user_id, size`, before.UnixMilli(), limit)
	if err != nil {
		return 0, mapError(err)
	}
	gone := map[string]sqlstore.Usage{}
	for rows.Next() {
		var user string
		var size int64
		if err := rows.Scan(&user, &size); err != nil {
			rows.Close()
			return 0, mapError(err)
		}
		gone[user] = gone[user].With(size)
		removed++
	}
	if err := rows.Close(); err != nil {
		return 0, mapError(err)
	}
	for user, u := range gone {
		if _, err := tx.ExecContext(ctx, "UPDATE history_usage SET records = records - ?2, bytes = bytes - ?3 WHERE user_id = ?1",
			user, u.Records, u.Bytes); err != nil {
			return 0, mapError(err)
		}
	}
	return removed, mapError(tx.Commit())
}

const deleteEvents = "DELETE FROM event_outbox WHERE seq IN (SELECT value FROM json_each(?))"

// Deliver passes the oldest events to send. This process is the file's
// only writer, and its one writer commits events in seq order, so one
// dispatcher at a time delivers them all in that order.
func (s *Store) Deliver(ctx context.Context, max int, send func([]userattrs.Record) []bool) (int, error) {
	if s.isClosed() {
		return 0, userattrs.ErrClosed
	}
	s.delivering.Lock()
	defer s.delivering.Unlock()
	rows, err := s.read.QueryContext(ctx, "SELECT seq, record FROM event_outbox ORDER BY seq LIMIT ?", max)
	if err != nil {
		return 0, mapError(err)
	}
	events, err := scanEvents(rows)
	if err != nil || len(events) == 0 {
		return 0, err
	}
	if done := sqlstore.Done(events, send(events)); len(done) > 0 {
		seqs := string(sqlstore.AppendSeqs(nil, done))
		_, err := s.write.ExecContext(ctx, deleteEvents, seqs)
		if isFull(err) && s.reserve.release() {
			// The sinks took these events: on a full disk, give up the
			// reserve rather than send them again and again.
			s.reserve.full.Store(true)
			_, err = s.write.ExecContext(ctx, deleteEvents, seqs)
		}
		if err != nil {
			return len(events), mapError(err)
		}
	}
	return len(events), nil
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

// OutboxStats reports how many events wait, and since when.
func (s *Store) OutboxStats(ctx context.Context) (int, time.Time, error) {
	var depth int
	var oldest sql.NullInt64
	if err := s.read.QueryRowContext(ctx, "SELECT count(*), min(at_ms) FROM event_outbox").Scan(&depth, &oldest); err != nil {
		return 0, time.Time{}, mapError(err)
	}
	if !oldest.Valid {
		return depth, time.Time{}, nil
	}
	return depth, time.UnixMilli(oldest.Int64), nil
}

// CursorKey returns the key of the history's cursors, which migration 6
// made.
func (s *Store) CursorKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := s.read.QueryRowContext(ctx, "SELECT cursor_key FROM store_key WHERE id = 1").Scan(&key)
	return key, mapError(err)
}
