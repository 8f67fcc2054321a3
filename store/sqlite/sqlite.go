// Package sqlite is the embedded store: the attributes live in one SQLite
// database file, and no server is needed.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps attributes in a SQLite database in WAL mode: one connection
// writes, a pool of connections reads beside it.
//
// Writes are group-committed: one goroutine owns the write connection and
// applies every merge waiting for it in one transaction, so that concurrent
// writers share one fsync instead of each waiting for its own.
type Store struct {
	path    string
	lock    *os.File // holds the exclusive lock on the database file
	stallAt time.Duration
	write   *sql.DB
	read    *sql.DB
	get     *sql.Stmt // on the read pool
	// The writer's statements, prepared once on its connection.
	lockRow, upsert, remove, probe  *sql.Stmt
	countUsage, oldest, trimRecords *sql.Stmt
	bounds                          userattrs.HistoryBounds
	// Inserts of 1, 2, 4... maxBatch records and events, prepared at
	// open: a batch's go in with a few statements, never one per change.
	records, events map[int]*sql.Stmt
	eventsOn        bool       // a change writes its event to the outbox
	delivering      sync.Mutex // one dispatcher at a time holds the outbox
	// The attributes of users as the writer last committed or read them.
	known  *knowledge
	writes *sqlstore.Batcher // one writer: SQLite has one write lock
	close  sync.Once

	// What readiness reads of the writer without writing: since when its
	// transaction has been running (0: none), and whether its last
	// transaction failed.
	committing atomic.Int64 // Unix nanoseconds
	lastFailed atomic.Bool
	reserve    *reserve
}

// maxBatch bounds how many merges share one transaction.
const maxBatch = 128

const (
	selectAttributes = `SELECT name, "values" FROM user_attribute WHERE user_id = ?`
	upsertAttribute  = `INSERT INTO user_attribute (user_id, name, "values", updated_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (user_id, name) DO UPDATE SET "values" = excluded."values", updated_at = excluded.updated_at`
	deleteAttribute = "DELETE FROM user_attribute WHERE user_id = ? AND name = ?"
	probeWrite      = "INSERT OR REPLACE INTO store_probe (id, checked_at) VALUES (1, ?)"
	insertRecords   = `INSERT INTO attribute_history (id, user_id, at_ms, actor_type, actor_id, client_id, request_id,
		set_values, removed_keys, changed_keys, size) VALUES `
	recordValues = "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
	// What a user's history holds, where the writer does not know it; a
	// user's oldest rows, and their removal past the bounds.
	countUsage    = "SELECT count(*), coalesce(sum(size), 0) FROM attribute_history WHERE user_id = ?"
	oldestRecords = "SELECT seq, size FROM attribute_history WHERE user_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
	trimRecords   = "DELETE FROM attribute_history WHERE user_id = ?1 AND seq <= ?2"
	insertEvents  = "INSERT INTO event_outbox (part, user_id, at_ms, record) VALUES "
	eventValues   = "(?, ?, ?, ?)"
)

var _ userattrs.Store = (*Store)(nil)

// Close lets the writer finish the merges it took, then closes both
// connection pools and releases the file. Merges still waiting are given up
// (ErrClosed), and every call after Close is ErrClosed.
func (s *Store) Close() error {
	var err error
	s.close.Do(func() {
		s.writes.Close()
		errs := []error{s.get.Close(), s.lockRow.Close(), s.upsert.Close(), s.remove.Close(), s.probe.Close(),
			s.countUsage.Close(), s.oldest.Close(), s.trimRecords.Close()}
		for _, stmt := range slices.Concat(slices.Collect(maps.Values(s.records)), slices.Collect(maps.Values(s.events))) {
			errs = append(errs, stmt.Close())
		}
		err = errors.Join(append(errs, s.read.Close(), s.write.Close(), s.lock.Close())...)
	})
	return err
}

func (s *Store) isClosed() bool { return s.writes.Closed() }

// Capabilities: one process, durable, with a history, and an outbox when
// events are on.
func (s *Store) Capabilities() userattrs.Capabilities {
	return userattrs.Capabilities{Durable: true, Outbox: s.eventsOn}
}

// Ping checks that writes can succeed and the database answers a query,
// without writing while they do: the file at the path is still the one the
// store writes, no transaction has stalled, and the last one succeeded. A
// failed last write is tried again with a probe write, so that readiness
// comes back by itself once the disk has room again.
func (s *Store) Ping(ctx context.Context) error {
	if s.isClosed() {
		return userattrs.ErrClosed
	}
	if err := s.sameFile(); err != nil {
		return err
	}
	if since := s.committing.Load(); since != 0 {
		if running := time.Since(time.Unix(0, since)); running > s.stallAt {
			return fmt.Errorf("%w: sqlite: a write has not finished for %v", userattrs.ErrUnavailable, running.Round(time.Second))
		}
	}
	if s.reserve.full.Load() || s.reserve.used.Load() {
		// Probes of a few bytes may fit where a change does not: on a
		// full disk readiness asks the file system instead, every time.
		if err := s.reserve.recover(); err != nil {
			return fmt.Errorf("%w: %w", userattrs.ErrUnavailable, err)
		}
	}
	if s.lastFailed.Load() {
		if err := s.writes.Do(ctx, "", nil, nil); err != nil {
			return err
		}
	}
	var one int
	if err := s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return mapError(err)
	}
	return nil
}

// Get returns the attributes of user; a user never written has none.
func (s *Store) Get(ctx context.Context, user string) (userattrs.Attributes, error) {
	if s.isClosed() {
		return nil, userattrs.ErrClosed
	}
	return load(ctx, s.get, user)
}

// load reads the attribute rows of user through stmt.
func load(ctx context.Context, stmt *sql.Stmt, user string) (userattrs.Attributes, error) {
	rows, err := stmt.QueryContext(ctx, user)
	if err != nil {
		return nil, mapError(err)
	}
	defer rows.Close()
	attrs := userattrs.Attributes{}
	var name, values string
	for rows.Next() {
		if err := rows.Scan(&name, &values); err != nil {
			return nil, mapError(err)
		}
		if attrs[name], err = sqlstore.DecodeValues(values); err != nil {
			return nil, err
		}
	}
	return attrs, mapError(rows.Err())
}

// Update hands the merge to the writer and returns once the transaction
// that applied it is committed and on disk (see sqlstore.Batcher).
//
// The writer is one goroutine, so what it does for each merge bounds how
// many merges a second the store takes. Where the writer knows the user's
// attributes, Update first runs update against them on the caller's
// goroutine and works out the rows to write; the writer then only checks
// that they are still the user's current attributes and writes the rows.
// If they are not (another merge of the user came first), the writer runs
// update again against the current ones, as the Store contract allows.
func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	var p *prepared
	if k, ok := s.known.lookup(user); ok {
		p = prepare(user, userattrs.OriginOf(ctx), k, update)
	}
	return s.writes.Do(ctx, user, update, p)
}

// sameFile reports a database file deleted or replaced under the running
// store as unavailable: the store would go on writing a file that is no
// longer at its path, and a restart would find none of it.
func (s *Store) sameFile() error {
	held, err := s.lock.Stat()
	atPath, pathErr := os.Stat(s.path)
	if err != nil || pathErr != nil || !os.SameFile(held, atPath) {
		return fmt.Errorf("%w: sqlite: %s is no longer the database file this process writes", userattrs.ErrUnavailable, s.path)
	}
	return nil
}

// mapError reports a database that is busy, locked or gone as
// ErrUnavailable: the request may succeed later.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var e *sqlite.Error
	if errors.As(err, &e) {
		switch e.Code() & 0xff {
		case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_FULL, sqlite3.SQLITE_CANTOPEN:
			return fmt.Errorf("%w: sqlite: %w", userattrs.ErrUnavailable, err)
		}
	}
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return fmt.Errorf("%w: sqlite: %w", userattrs.ErrUnavailable, err)
	}
	return fmt.Errorf("sqlite: %w", err)
}

// Settings reports the journal mode and synchronous level of the writing
// connection, the two settings a durable commit depends on.
func (s *Store) Settings(ctx context.Context) (journalMode string, synchronous int) {
	s.write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&journalMode)
	s.write.QueryRowContext(ctx, "PRAGMA synchronous").Scan(&synchronous)
	return journalMode, synchronous
}
