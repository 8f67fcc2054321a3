package postgres

import (
	"context"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
	"github.com/userattrs/userattrs/store/sqlstore"
)

var (
	_ userattrs.History = (*Store)(nil)
)

const (
	// The records and events of a batch go in with its write, in the
	// order the batch made its changes: each after its user's row lock,
	// so that seq orders each user's changes as they commit.
	insertRecords = `INSERT INTO attribute_history (id, user_id, at, actor_type, actor_id, client_id, request_id,
		set_values, removed_keys, changed_keys, size)
		SELECT r.id, r.user_id, $3, r.actor_type, r.actor_id, r.client_id, r.request_id, r.set_values, r.removed_keys,
			ARRAY(SELECT jsonb_array_elements_text(r.changed::jsonb)), r.size
		FROM unnest($1::text[], $2::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::text[],
			$11::int[])
			WITH ORDINALITY AS r(id, user_id, actor_type, actor_id, client_id, request_id, set_values, removed_keys, changed, size, n)
		ORDER BY r.n`
	// The oldest records of a user, and their removal past the bounds.
	oldestRecords = "SELECT seq, size FROM attribute_history WHERE user_id = $1 AND seq > $2 ORDER BY seq LIMIT $3"
	trimRecords   = `DELETE FROM attribute_history AS h USING unnest($1::text[], $2::bigint[]) AS d(user_id, through)
		WHERE h.user_id = d.user_id AND h.seq <= d.through`
	insertEvents = `INSERT INTO event_outbox (part, user_id, at, record)
		SELECT e.part, e.user_id, $2, e.record FROM unnest($1::smallint[], $3::text[], $4::text[])
			WITH ORDINALITY AS e(part, user_id, record, n) ORDER BY e.n`
	selectHistory = `SELECT seq, id, user_id, (extract(epoch FROM at) * 1000)::bigint AS at_ms, actor_type, actor_id,
		client_id, request_id, set_values, removed_keys FROM attribute_history
		WHERE user_id = $1 AND seq < $2 AND ($3::timestamptz IS NULL OR at >= $3)
		AND ($4::timestamptz IS NULL OR at < $4) AND ($5 = '' OR $5 = ANY(changed_keys))
		ORDER BY seq DESC LIMIT $6`
)

// queueJournal adds the writes of a batch's records and, with events on,
// their events to its pipeline, and the removal of the oldest records of
// users they take past the history's bounds, which it finds with conn inside the batch's transaction. It
// leaves each saved user's history usage in locked.
func (s *Store) queueJournal(ctx context.Context, conn *pgxpool.Conn, write *pgx.Batch, locked *lockedRows) error {
	j := locked.journal
	n := len(j.Records)
	if n == 0 {
		return nil
	}
	at := j.Records[0].Time
	if s.events {
		parts, users, events := make([]int16, 0, n), make([]string, 0, n), make([]string, 0, n)
		for i := range j.Records {
			rec := &j.Records[i]
			parts = append(parts, int16(store.OutboxPartition(rec.User)))
			users = append(users, rec.User)
			events = append(events, sqlstore.EventData(rec))
		}
		write.Queue(insertEvents, parts, at, users, events)
	}
	if s.bounds.Off {
		return nil // no record is kept, and no user's usage grows
	}
	cols := make([][]string, 9)
	for i := range cols {
		cols[i] = make([]string, 0, n)
	}
	sizes := make([]int32, 0, n)
	for i := range j.Records {
		rec := &j.Records[i]
		c := sqlstore.Columns(rec)
		for k, v := range []string{rec.ID, rec.User, c.ActorType, c.ActorID, rec.ClientID, rec.RequestID, c.Set, c.Removed, c.Changed} {
			cols[k] = append(cols[k], v)
		}
		sizes = append(sizes, int32(c.Size))
		row := locked.current[rec.User]
		row.usage = row.usage.With(c.Size)
		locked.current[rec.User] = row
	}
	var trimmed []string
	var through []int64
	for _, user := range locked.saved {
		row := locked.current[user]
		if !row.usage.Over(s.bounds) {
			continue
		}
		seq, kept, err := sqlstore.Trim(s.bounds, row.usage, func(after int64, n int) ([]sqlstore.SizedSeq, error) {
			rows, _ := conn.Query(ctx, oldestRecords, user, after, n)
			oldest, err := pgx.CollectRows(rows, pgx.RowToStructByPos[sqlstore.SizedSeq])
			return oldest, mapError(err)
		})
		if err != nil {
			return err
		}
		row.usage = kept
		locked.current[user] = row
		trimmed, through = append(trimmed, user), append(through, seq)
	}
	write.Queue(insertRecords, cols[0], cols[1], at, cols[2], cols[3], cols[4], cols[5], cols[6], cols[7], cols[8], sizes)
	if len(trimmed) > 0 {
		write.Queue(trimRecords, trimmed, through)
	}
	return nil
}

// History returns the records of user that q selects, newest first.
func (s *Store) History(ctx context.Context, user string, q userattrs.HistoryQuery) ([]userattrs.Record, error) {
	if s.writes.Closed() {
		return nil, userattrs.ErrClosed
	}
	if s.bounds.Off {
		return nil, userattrs.ErrNoHistory
	}
	rows, _ := s.pool.Query(ctx, selectHistory, user, sqlstore.PageStart(q), optionalTime(q.Since), optionalTime(q.Until), q.Key,
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

// pruneRecords removes those of the $2 oldest records older than $1 whose
// users' rows no merge holds, and takes them off those users' history
// usage. It locks the users' rows before their records, in the order of
// their ids, as merges do: a merge that trims the same user's records
// waits for it, or it skips that user, never the two waiting on each
// other. A record a merge trimmed meanwhile is neither removed nor counted
// again.
const pruneRecords = `WITH candidates AS (
		SELECT seq, user_id FROM attribute_history WHERE at < $1 ORDER BY at LIMIT $2
	), owners AS (
		SELECT u.user_id FROM user_attributes AS u WHERE u.user_id IN (SELECT user_id FROM candidates)
		ORDER BY u.user_id FOR UPDATE SKIP LOCKED
	), gone AS (
		DELETE FROM attribute_history AS h USING candidates AS c, owners AS o
		WHERE h.seq = c.seq AND c.user_id = o.user_id
		RETURNING h.user_id, h.size
	), usage AS (
		SELECT user_id, count(*) AS records, sum(size) AS bytes FROM gone GROUP BY user_id
	)
	UPDATE user_attributes AS u SET history_records = u.history_records - g.records, history_bytes = u.history_bytes - g.bytes
	FROM usage AS g WHERE u.user_id = g.user_id
	RETURNING g.records`

// PruneHistory removes up to limit of the records older than before, in a
// transaction of its own; it skips, until a later call, the records of
// users whose merges are committing.
func (s *Store) PruneHistory(ctx context.Context, before time.Time, limit int) (int, error) {
	if s.writes.Closed() {
		return 0, userattrs.ErrClosed
	}
	rows, _ := s.pool.Query(ctx, pruneRecords, before, limit)
	counts, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	removed := 0
	for _, n := range counts {
		removed += int(n)
	}
	return removed, mapError(err)
}

// CursorKey returns the key of the history's cursors, which migration 4
// made for every instance.
func (s *Store) CursorKey(ctx context.Context) ([]byte, error) {
	var key []byte
	err := s.pool.QueryRow(ctx, "SELECT cursor_key FROM store_key WHERE id = 1").Scan(&key)
	return key, mapError(err)
}
