// Package sqlite is the embedded store: the attributes live in one SQLite
// database file, and no server is needed.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
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
	merges  chan *merge
	closing chan struct{} // closed by Close: no more merges are taken
	stopped chan struct{} // closed when the writer has finished
	close   sync.Once

	// What readiness reads of the writer without writing: since when its
	// transaction has been running (0: none), and whether its last
	// transaction failed.
	committing atomic.Int64 // Unix nanoseconds
	lastFailed atomic.Bool
}

// merge is one Update waiting for the writer. Its state decides, once,
// whether the writer takes it or its caller gives it up: a merge whose
// caller gave up is never applied, and one the writer took is always
// answered.
type merge struct {
	user   string
	update func(userattrs.Attributes) (userattrs.Attributes, error) // nil: a probe write of readiness
	state  atomic.Int32
	done   chan error
}

const (
	pending int32 = iota
	taken
	abandoned
)

// maxBatch bounds how many merges share one transaction.
const maxBatch = 128

const (
	selectAttributes = "SELECT attributes FROM user_attributes WHERE user_id = ?"
	deleteAttributes = "DELETE FROM user_attributes WHERE user_id = ?"
	upsertAttributes = `INSERT INTO user_attributes (user_id, attributes, updated_at) VALUES (?, ?, ?)
		ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes, updated_at = excluded.updated_at`
	probeWrite = "INSERT OR REPLACE INTO store_probe (id, checked_at) VALUES (1, ?)"
)

var _ userattrs.Store = (*Store)(nil)

// Kind is the SQLite store's row in the program's table of stores. Its
// migrations run whenever it opens.
func Kind() store.Kind {
	open := func(ctx context.Context, spec string, env store.Env) (userattrs.Store, error) {
		return Open(ctx, Config{Path: strings.TrimPrefix(spec, "sqlite:"), StalledAfter: env.Timeout})
	}
	return store.Kind{
		Name:  "sqlite",
		Form:  "sqlite:PATH",
		Match: store.Prefix("sqlite:"),
		Flags: store.NoFlags(open),
		Migrate: func(ctx context.Context, spec string) error {
			s, err := open(ctx, spec, store.Env{})
			if err != nil {
				return err
			}
			return s.Close()
		},
	}
}

// Config configures the SQLite store.
type Config struct {
	// Path is the database file; its directory is created if missing.
	Path string
	// Readers is the size of the read connection pool (default 4).
	Readers int
	// StalledAfter is how long a transaction may run before readiness says
	// that writes have stalled (default 5s): a frozen or failing disk.
	StalledAfter time.Duration
}

// Open opens (creating if needed) the database at cfg.Path and brings its
// schema up to date. The store holds an exclusive lock on the file while
// it is open: a second process on the same file would serve its own stale
// read cache, so it is refused.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" || strings.ContainsAny(cfg.Path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", cfg.Path)
	}
	if cfg.Readers <= 0 {
		cfg.Readers = 4
	}
	if cfg.StalledAfter <= 0 {
		cfg.StalledAfter = 5 * time.Second
	}
	lock, err := lockFile(cfg.Path)
	if err != nil {
		return nil, err
	}
	s, err := open(ctx, cfg)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock, s.path, s.stallAt = lock, cfg.Path, cfg.StalledAfter
	return s, nil
}

// lockFile creates the database file if needed, readable by its owner only
// (SQLite gives the WAL and shared-memory files the same mode), in a
// directory of the owner's, and takes an exclusive lock on it. The lock is
// flock(2), which SQLite's own POSIX record locks do not touch; it ends
// with the process, however it ends.
func lockFile(path string) (*os.File, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: create database directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("sqlite: %s is in use by another process: one process per SQLite file; "+
				"for several instances use PostgreSQL (--store postgres://...)", path)
		}
		return nil, fmt.Errorf("sqlite: lock %s: %w", path, err)
	}
	return f, nil
}

func open(ctx context.Context, cfg Config) (*Store, error) {
	// synchronous=FULL makes every commit wait for fsync of the WAL: a 204
	// must survive a power cut, which NORMAL does not promise in WAL mode.
	// Writes begin IMMEDIATE so that a merge holds the write lock from its
	// read to its write. The unix-excl VFS keeps the WAL index in the
	// process's memory instead of a mapped -shm file (the file is this
	// process's alone, see lockFile): a thread that touches a mapped page
	// of a frozen disk blocks where Go cannot stop it, and with it every
	// garbage collection, so the whole process, liveness included.
	params := url.Values{
		"vfs":           {"unix-excl"},
		"_journal_mode": {"WAL"},
		"_synchronous":  {"FULL"},
		"_busy_timeout": {"10000"},
		"_txlock":       {"immediate"},
	}
	write, err := sql.Open("sqlite", "file:"+cfg.Path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// SQLite allows one writer at a time; a single connection makes writers
	// queue in the pool instead of spinning on SQLITE_BUSY.
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)

	s := &Store{write: write}
	if err := s.migrate(ctx); err != nil {
		write.Close()
		return nil, err
	}

	params.Set("_query_only", "1")
	params.Del("_txlock")
	read, err := sql.Open("sqlite", "file:"+cfg.Path+"?"+params.Encode())
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	read.SetMaxOpenConns(cfg.Readers)
	read.SetMaxIdleConns(cfg.Readers)
	s.read = read
	if s.get, err = read.PrepareContext(ctx, selectAttributes); err != nil {
		s.read.Close()
		write.Close()
		return nil, fmt.Errorf("sqlite: prepare: %w", mapError(err))
	}
	s.merges = make(chan *merge, maxBatch)
	s.closing = make(chan struct{})
	s.stopped = make(chan struct{})
	go s.writer()
	return s, nil
}

func (s *Store) migrate(ctx context.Context) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, s.write, fsys)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Close lets the writer finish the merges it took, then closes both
// connection pools and releases the file. Merges still waiting are given up
// (ErrClosed), and every call after Close is ErrClosed.
func (s *Store) Close() error {
	var err error
	s.close.Do(func() {
		close(s.closing)
		<-s.stopped
		err = errors.Join(s.get.Close(), s.read.Close(), s.write.Close(), s.lock.Close())
	})
	return err
}

func (s *Store) isClosed() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// Capabilities: one process, durable.
func (s *Store) Capabilities() userattrs.Capabilities {
	return userattrs.Capabilities{Durable: true}
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
	if s.lastFailed.Load() {
		if err := s.enqueue(ctx, &merge{done: make(chan error, 1)}); err != nil {
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
	column, err := load(s.get.QueryRowContext(ctx, user))
	if err != nil {
		return nil, err
	}
	return sqlstore.Decode(column)
}

func load(row *sql.Row) ([]byte, error) {
	var column []byte
	err := row.Scan(&column)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return column, mapError(err)
}

// Update hands the merge to the writer and returns once the transaction
// that applied it is committed and on disk. When ctx ends first, the merge
// is given up and never applied, unless the writer has taken it already: its
// outcome is then a commit away, and Update waits for it.
func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	return s.enqueue(ctx, &merge{user: user, update: update, done: make(chan error, 1)})
}

// enqueue hands m to the writer and waits for its outcome, as Update says.
func (s *Store) enqueue(ctx context.Context, m *merge) error {
	select {
	case <-s.closing:
		return userattrs.ErrClosed
	default:
	}
	select {
	case s.merges <- m:
	case <-s.closing:
		return userattrs.ErrClosed
	case <-ctx.Done():
		return mapError(ctx.Err())
	}
	select {
	case err := <-m.done:
		return err
	case <-ctx.Done():
		if m.state.CompareAndSwap(pending, abandoned) {
			return mapError(ctx.Err())
		}
	case <-s.stopped:
		// The writer is gone; it answered every merge it took.
		if m.state.CompareAndSwap(pending, abandoned) {
			return userattrs.ErrClosed
		}
	}
	return <-m.done
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

// writer applies merges until the store closes: it takes the first one
// waiting and every other already queued, up to maxBatch, and commits them
// together. Once closing, it answers what is still queued with ErrClosed.
func (s *Store) writer() {
	defer close(s.stopped)
	batch := make([]*merge, 0, maxBatch)
	for {
		batch = batch[:0]
		select {
		case m := <-s.merges:
			batch = s.take(batch, m)
		case <-s.closing:
			s.giveUpQueued()
			return
		}
	fill:
		for len(batch) < maxBatch {
			select {
			case m := <-s.merges:
				batch = s.take(batch, m)
			default:
				break fill
			}
		}
		if len(batch) > 0 {
			s.commit(batch)
		}
	}
}

// take adds m to the batch unless its caller gave it up.
func (s *Store) take(batch []*merge, m *merge) []*merge {
	if m.state.CompareAndSwap(pending, taken) {
		return append(batch, m)
	}
	return batch
}

func (s *Store) giveUpQueued() {
	for {
		select {
		case m := <-s.merges:
			if m.state.CompareAndSwap(pending, taken) {
				m.done <- userattrs.ErrClosed
			}
		default:
			return
		}
	}
}

// commit applies a batch in one IMMEDIATE transaction. A merge whose
// updater refuses (limits, If-Match) gets its error and changes nothing;
// the others are acknowledged only after the commit. A database error fails
// the whole batch, since its transaction is rolled back.
func (s *Store) commit(batch []*merge) {
	// The batch outlives any one request: no request's context may cancel
	// the others' merges.
	ctx := context.Background()
	results := make([]error, len(batch))
	s.committing.Store(time.Now().UnixNano())
	defer s.committing.Store(0)
	err := func() (err error) {
		// Updaters' panics are their merges' errors (userattrs.Next); one
		// anywhere else fails the batch, not the process.
		defer userattrs.RecoverPanic(&err)
		if err := s.sameFile(); err != nil {
			return err
		}
		tx, err := s.write.BeginTx(ctx, nil)
		if err != nil {
			return mapError(err)
		}
		defer tx.Rollback()
		row := &batchRow{tx: tx, pending: map[string][]byte{}}
		for i, m := range batch {
			if m.update == nil {
				if _, err := tx.ExecContext(ctx, probeWrite, time.Now().UnixMilli()); err != nil {
					return mapError(err)
				}
				continue
			}
			err := sqlstore.Apply(ctx, row, m.user, m.update)
			if row.failed != nil {
				return row.failed
			}
			results[i] = err
		}
		return mapError(tx.Commit())
	}()
	s.lastFailed.Store(err != nil)
	for i, m := range batch {
		if err != nil {
			m.done <- err
		} else {
			m.done <- results[i]
		}
	}
}

// batchRow is a user's row inside the writer's transaction: a user merged
// twice in one batch sees the batch's own first write. The transaction
// began IMMEDIATE and holds the database's write lock, which keeps every
// other writer out.
type batchRow struct {
	tx      *sql.Tx
	pending map[string][]byte // attributes column written in this batch; nil when deleted
	failed  error             // a database error, which aborts the batch
}

func (r *batchRow) LoadForUpdate(ctx context.Context, user string) ([]byte, error) {
	if column, ok := r.pending[user]; ok {
		return column, nil
	}
	column, err := load(r.tx.QueryRowContext(ctx, selectAttributes, user))
	if err != nil {
		r.failed = err
	}
	return column, err
}

func (r *batchRow) Save(ctx context.Context, user string, column []byte, empty bool) error {
	var err error
	if empty {
		_, err = r.tx.ExecContext(ctx, deleteAttributes, user)
		column = nil
	} else {
		_, err = r.tx.ExecContext(ctx, upsertAttributes, user, column, time.Now().UnixMilli())
	}
	if err != nil {
		r.failed = mapError(err)
		return r.failed
	}
	r.pending[user] = column
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
