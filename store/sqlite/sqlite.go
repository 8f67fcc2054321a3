// Package sqlite is the embedded store: the attributes live in one SQLite
// database file, and no server is needed.
package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/bounded"
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
	// The writer's statements, prepared once on its connection.
	lockRow, upsert, remove, probe *sql.Stmt
	setUsage, oldest, trimRecords  *sql.Stmt
	bounds                         userattrs.HistoryBounds
	// Inserts of 1, 2, 4... maxBatch records, events and history usages,
	// prepared at open: a batch's go in with a few statements, never one
	// per change.
	records, events, usages map[int]*sql.Stmt
	eventsOn                bool       // a change writes its event to the outbox
	delivering              sync.Mutex // one dispatcher at a time holds the outbox
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
	// What a batch's records add to its users' histories, and what they
	// then hold; a user's oldest rows, and their removal past the bounds.
	addUsage    = "INSERT INTO history_usage (user_id, records, bytes) VALUES "
	usageValues = "(?, ?, ?)"
	usageAdded  = ` ON CONFLICT (user_id) DO UPDATE SET records = records + excluded.records, bytes = bytes + excluded.bytes
		RETURNING user_id, records, bytes`
	setUsage      = "UPDATE history_usage SET records = ?2, bytes = ?3 WHERE user_id = ?1"
	oldestRecords = "SELECT seq, size FROM attribute_history WHERE user_id = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3"
	trimRecords   = "DELETE FROM attribute_history WHERE user_id = ?1 AND seq <= ?2"
	insertEvents  = "INSERT INTO event_outbox (part, user_id, at_ms, record) VALUES "
	eventValues   = "(?, ?, ?, ?)"
)

var _ userattrs.Store = (*Store)(nil)

// Kind is the SQLite store's row in the program's table of stores. Its
// migrations run whenever it opens.
func Kind() store.Kind {
	open := func(ctx context.Context, spec string, env store.Env) (userattrs.Store, error) {
		return Open(ctx, Config{Path: strings.TrimPrefix(spec, "sqlite:"), StalledAfter: env.Timeout, Events: env.Events,
			HistoryBounds: env.HistoryBounds})
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
	// KnownUsers and KnownBytes bound how many users' committed attributes
	// the writer keeps decoded (default 16384 users, 16 MiB of names and
	// values), so that a merge of a user merged recently neither reads nor
	// decodes their row.
	KnownUsers, KnownBytes int
	// Events: every change also writes its change event to the outbox, in
	// its transaction, for a dispatcher to deliver.
	Events bool
	// HistoryBounds bound each user's history (the zero value: none).
	HistoryBounds userattrs.HistoryBounds
	// Reserve is the disk space set aside beside the database, so that
	// delivered events can be deleted on a full disk (default
	// DefaultReserve; below 0: none).
	Reserve int64
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
	if cfg.Reserve == 0 {
		cfg.Reserve = DefaultReserve
	}
	lock, err := lockFile(cfg.Path)
	if err != nil {
		return nil, err
	}
	room := newReserve(cfg.Path, cfg.Reserve)
	if err := room.make(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("sqlite: set aside %d bytes beside the database, for deliveries on a full disk: %w", cfg.Reserve, err)
	}
	s, err := open(ctx, cfg)
	if err != nil {
		lock.Close()
		return nil, err
	}
	s.lock, s.path, s.stallAt, s.reserve = lock, cfg.Path, cfg.StalledAfter, room
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
	// A statement that inserts several rows (a batch's records) keeps a
	// statement journal, in memory rather than in a temporary file.
	writeParams := maps.Clone(params)
	writeParams.Add("_pragma", "temp_store(memory)")
	write, err := sql.Open("sqlite", "file:"+cfg.Path+"?"+writeParams.Encode())
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
	// A reader's page cache of 1 MiB rather than SQLite's 2 MiB holds the
	// B-tree's inner pages, which every read walks; the leaves of a large
	// store are read at random, where no cache within an instance's
	// memory helps, and come from the operating system's cache.
	params.Add("_pragma", "cache_size(-1024)")
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
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{{&s.lockRow, selectAttributes}, {&s.upsert, upsertAttribute}, {&s.remove, deleteAttribute}, {&s.probe, probeWrite},
		{&s.setUsage, setUsage}, {&s.oldest, oldestRecords}, {&s.trimRecords, trimRecords}} {
		if *p.stmt, err = write.PrepareContext(ctx, p.query); err != nil {
			s.read.Close()
			write.Close()
			return nil, fmt.Errorf("sqlite: prepare: %w", mapError(err))
		}
	}
	s.eventsOn, s.bounds = cfg.Events, cfg.HistoryBounds
	s.records, s.events, s.usages = map[int]*sql.Stmt{}, map[int]*sql.Stmt{}, map[int]*sql.Stmt{}
	type sizedInsert struct {
		stmts                  map[int]*sql.Stmt
		insert, values, suffix string
	}
	inserts := []sizedInsert{{s.records, insertRecords, recordValues, ""}, {s.usages, addUsage, usageValues, usageAdded}}
	if cfg.Events {
		// Without events no event is ever inserted: nothing to prepare.
		inserts = append(inserts, sizedInsert{s.events, insertEvents, eventValues, ""})
	}
	for n := 1; n <= maxBatch; n *= 2 {
		for _, p := range inserts {
			if p.stmts[n], err = write.PrepareContext(ctx, p.insert+strings.Repeat(p.values+",", n-1)+p.values+p.suffix); err != nil {
				s.read.Close()
				write.Close()
				return nil, fmt.Errorf("sqlite: prepare: %w", mapError(err))
			}
		}
	}
	s.known = &knowledge{users: bounded.New[userattrs.Attributes](cmp.Or(cfg.KnownUsers, 16384), cmp.Or(cfg.KnownBytes, 16<<20))}
	s.writes = sqlstore.NewBatcher(1, maxBatch, s.commit)
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
		s.writes.Close()
		errs := []error{s.get.Close(), s.lockRow.Close(), s.upsert.Close(), s.remove.Close(), s.probe.Close(),
			s.setUsage.Close(), s.oldest.Close(), s.trimRecords.Close()}
		for _, stmt := range slices.Concat(slices.Collect(maps.Values(s.records)), slices.Collect(maps.Values(s.events)),
			slices.Collect(maps.Values(s.usages))) {
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

// prepared is a merge worked out against attributes the writer knew.
type prepared struct {
	base    userattrs.Attributes // what update was given
	err     error                // what it returned
	changed bool
	next    known
	changes []change
	record  userattrs.Record
}

func prepare(user string, origin userattrs.Origin, k known, update func(userattrs.Attributes) (userattrs.Attributes, error)) *prepared {
	next, changed, err := store.Next(k.attrs, update)
	p := &prepared{base: k.attrs, err: err, changed: changed}
	if err == nil && changed {
		p.record = userattrs.NewRecord(user, origin, k.attrs, next)
		p.changes, p.next = plan(k, next, &p.record)
	}
	return p
}

// knowledge is the attributes of users as the writer last committed or
// read them, within bounds; the writer changes it, and merges read it to
// prepare themselves.
type knowledge struct {
	mu    sync.Mutex
	users *bounded.Map[userattrs.Attributes]
}

func (k *knowledge) lookup(user string) (known, bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	attrs, size, ok := k.users.Lookup(user)
	return known{attrs, size}, ok
}

func (k *knowledge) put(user string, kn known) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users.Put(user, kn.attrs, kn.size)
}

func (k *knowledge) remove(user string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.users.Remove(user)
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

// commit applies a batch in one IMMEDIATE transaction. A merge whose
// updater refuses (limits, If-Match) gets its error and changes nothing;
// the others are acknowledged only after the commit. A database error fails
// the whole batch, since its transaction is rolled back.
func (s *Store) commit(batch []*sqlstore.Merge) ([]error, error) {
	// The batch outlives any one request: no request's context may cancel
	// the others' merges.
	ctx := context.Background()
	outcomes := make([]error, len(batch))
	s.committing.Store(time.Now().UnixNano())
	defer s.committing.Store(0)
	row := &batchRow{s: s, pending: map[string]known{}, journal: sqlstore.NewJournal()}
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
		row.tx = tx
		for i, m := range batch {
			if m.Update == nil {
				if _, err := tx.StmtContext(ctx, s.probe).ExecContext(ctx, time.Now().UnixMilli()); err != nil {
					return mapError(err)
				}
				continue
			}
			err := row.merge(ctx, m)
			if row.failed != nil {
				return row.failed
			}
			outcomes[i] = err
		}
		if err := row.writeJournal(ctx); err != nil {
			return err
		}
		return mapError(tx.Commit())
	}()
	row.settle(err)
	s.lastFailed.Store(err != nil)
	if isFull(err) {
		s.reserve.full.Store(true)
	}
	return outcomes, err
}

// batchRow is a user's row inside the writer's transaction: a user merged
// twice in one batch sees the batch's own first write. The transaction
// began IMMEDIATE and holds the database's write lock, which keeps every
// other writer out.
type batchRow struct {
	s       *Store
	tx      *sql.Tx
	pending map[string]known // written in this batch, not yet committed
	journal *sqlstore.Journal
	failed  error // a database error, which aborts the batch
}

// known is a user's attributes as the writer knows them, and their size in
// the writer's knowledge (see knownSize), kept up to date by each merge
// instead of counted again.
type known struct {
	attrs userattrs.Attributes
	size  int
}

// LoadForUpdate reads what the batch wrote, or else what the writer knows
// is committed, or else the rows. This process is the file's only writer
// (see lockFile), so what it committed last is what the rows hold.
func (r *batchRow) LoadForUpdate(ctx context.Context, user string) (userattrs.Attributes, error) {
	k, err := r.current(ctx, user)
	return k.attrs, err
}

func (r *batchRow) current(ctx context.Context, user string) (known, error) {
	if k, ok := r.pending[user]; ok {
		return k, nil
	}
	if k, ok := r.s.known.lookup(user); ok {
		return k, nil
	}
	attrs, err := load(ctx, r.tx.StmtContext(ctx, r.s.lockRow), user)
	if err != nil {
		if !errors.Is(err, sqlstore.ErrUndecodable) {
			r.failed = err
		}
		return known{}, err
	}
	k := known{attrs, knownSize(user, attrs)}
	r.s.known.put(user, k)
	return k, nil
}

// merge applies m: as prepared, when what it was prepared against is still
// the user's current attributes, or else by running its updater now.
func (r *batchRow) merge(ctx context.Context, m *sqlstore.Merge) error {
	if p, ok := m.Prepared.(*prepared); ok && p != nil {
		current, err := r.current(ctx, m.User)
		if err != nil {
			return err
		}
		if store.Same(current.attrs, p.base) {
			if p.err != nil || !p.changed {
				return p.err
			}
			return r.write(ctx, m.User, p.changes, p.next, &p.record)
		}
	}
	return sqlstore.Apply(ctx, r, m)
}

// Save writes the rows of the attributes the change set or removed, and
// only those.
func (r *batchRow) Save(ctx context.Context, user string, _, next userattrs.Attributes, rec *userattrs.Record) error {
	current, err := r.current(ctx, user) // what LoadForUpdate returned: no read
	if err != nil {
		return err
	}
	changes, k := plan(current, next, rec)
	return r.write(ctx, user, changes, k, rec)
}

// change is one attribute row to write: its values as the column holds
// them, or its removal.
type change struct {
	name, values string
	remove       bool
}

// plan works out the rows that turn current into next, and next's size,
// from current's and the record of the change: the attributes a merge
// leaves as they were cost nothing here.
func plan(current known, next userattrs.Attributes, rec *userattrs.Record) ([]change, known) {
	changes := make([]change, 0, len(rec.Set)+len(rec.Removed))
	size := current.size + (len(next)-len(current.attrs))*knownAttributeOverhead
	for name, values := range rec.Set {
		if old, ok := current.attrs[name]; ok {
			size -= userattrs.SizeOf(name, old)
		}
		size += userattrs.SizeOf(name, values)
		// As a string, which SQLite keeps as TEXT, what its JSON
		// functions read as JSON text.
		changes = append(changes, change{name: name, values: string(sqlstore.AppendValues(nil, values))})
	}
	for _, name := range rec.Removed {
		size -= userattrs.SizeOf(name, current.attrs[name])
		changes = append(changes, change{name: name, remove: true})
	}
	return changes, known{next, size}
}

// write writes the rows of changes, after which the user's attributes in
// this batch are next, and keeps the record of the change.
func (r *batchRow) write(ctx context.Context, user string, changes []change, next known, rec *userattrs.Record) error {
	now := time.Now().UnixMilli()
	upsert, remove := r.tx.StmtContext(ctx, r.s.upsert), r.tx.StmtContext(ctx, r.s.remove)
	for _, c := range changes {
		var err error
		if c.remove {
			_, err = remove.ExecContext(ctx, user, c.name)
		} else {
			_, err = upsert.ExecContext(ctx, user, c.name, c.values, now)
		}
		if err != nil {
			r.failed = mapError(err)
			return r.failed
		}
	}
	r.pending[user] = next
	r.journal.Add(rec)
	return nil
}

// writeJournal writes the records of the batch's changes to the history,
// and their events to the outbox when events are on, in the order the
// changes were made: one statement each, whatever the batch's size (a
// batch holds at most maxBatch changes).
func (r *batchRow) writeJournal(ctx context.Context) error {
	records := r.journal.Records
	if len(records) == 0 {
		return nil
	}
	at := records[0].Time.UnixMilli()
	args := make([]any, 0, 11*len(records))
	added := make(map[string]sqlstore.Usage, len(r.pending))
	for i := range records {
		rec := &records[i]
		c := sqlstore.Columns(rec)
		args = append(args, rec.ID, rec.User, at, c.ActorType, c.ActorID, rec.ClientID, rec.RequestID, c.Set, c.Removed, c.Changed, c.Size)
		added[rec.User] = added[rec.User].With(c.Size)
	}
	if err := r.exec(ctx, r.s.records, len(records), 11, args); err != nil {
		return err
	}
	if err := r.bound(ctx, added); err != nil || !r.s.eventsOn {
		return err
	}
	args = args[:0]
	for i := range records {
		args = append(args, store.OutboxPartition(records[i].User), records[i].User, at, sqlstore.EventData(&records[i]))
	}
	return r.exec(ctx, r.s.events, len(records), 4, args)
}

// bound adds to each user's history usage what the batch's records add,
// with a few multi-row upserts, and removes the oldest records of those it
// takes past the bounds.
func (r *batchRow) bound(ctx context.Context, added map[string]sqlstore.Usage) error {
	args := make([]any, 0, 3*len(added))
	for user, add := range added {
		args = append(args, user, add.Records, add.Bytes)
	}
	var over []string
	usages := map[string]sqlstore.Usage{}
	err := r.each(ctx, r.s.usages, len(added), 3, args, func(stmt *sql.Stmt, args []any) error {
		rows, err := stmt.QueryContext(ctx, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var user string
			var usage sqlstore.Usage
			if err := rows.Scan(&user, &usage.Records, &usage.Bytes); err != nil {
				return err
			}
			if usage.Over(r.s.bounds) {
				over, usages[user] = append(over, user), usage
			}
		}
		return rows.Err()
	})
	if err != nil {
		return mapError(err)
	}
	for _, user := range over {
		usage := usages[user]
		through, kept, err := sqlstore.Trim(r.s.bounds, usage, func(after int64, n int) ([]sqlstore.SizedSeq, error) {
			rows, err := r.tx.StmtContext(ctx, r.s.oldest).QueryContext(ctx, user, after, n)
			if err != nil {
				return nil, mapError(err)
			}
			defer rows.Close()
			var oldest []sqlstore.SizedSeq
			for rows.Next() {
				var row sqlstore.SizedSeq
				if err := rows.Scan(&row.Seq, &row.Size); err != nil {
					return nil, mapError(err)
				}
				oldest = append(oldest, row)
			}
			return oldest, mapError(rows.Err())
		})
		if err != nil {
			return err
		}
		if _, err := r.tx.StmtContext(ctx, r.s.trimRecords).ExecContext(ctx, user, through); err != nil {
			return mapError(err)
		}
		if _, err := r.tx.StmtContext(ctx, r.s.setUsage).ExecContext(ctx, user, kept.Records, kept.Bytes); err != nil {
			return mapError(err)
		}
	}
	return nil
}

// exec inserts n rows of args, width values each, with the prepared
// inserts whose sizes add up to n: at most one per power of two.
func (r *batchRow) exec(ctx context.Context, stmts map[int]*sql.Stmt, n, width int, args []any) error {
	return mapError(r.each(ctx, stmts, n, width, args, func(stmt *sql.Stmt, args []any) error {
		_, err := stmt.ExecContext(ctx, args...)
		return err
	}))
}

// each runs, in the batch's transaction, the prepared statements of stmts
// whose sizes add up to n rows of args, width values each, with run.
func (r *batchRow) each(ctx context.Context, stmts map[int]*sql.Stmt, n, width int, args []any, run func(*sql.Stmt, []any) error) error {
	for size := maxBatch; n > 0; size /= 2 {
		for n >= size {
			if err := run(r.tx.StmtContext(ctx, stmts[size]), args[:size*width]); err != nil {
				return err
			}
			args, n = args[size*width:], n-size
		}
	}
	return nil
}

// settle tells the writer's knowledge what became of the batch: what it
// wrote is committed, or, when the transaction failed, unknown, so the
// next merge of those users reads their rows.
func (r *batchRow) settle(err error) {
	for user, k := range r.pending {
		if err == nil {
			r.s.known.put(user, k)
		} else {
			r.s.known.remove(user)
		}
	}
}

// knownSize is what a user's entry in the writer's knowledge counts against
// its bytes: names and values, and roughly the map slots and headers
// around them.
func knownSize(user string, attrs userattrs.Attributes) int {
	return 64 + len(user) + attrs.Size() + knownAttributeOverhead*len(attrs)
}

const knownAttributeOverhead = 56

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
