package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/pressly/goose/v3"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/bounded"
	"github.com/userattrs/userattrs/store"
	"github.com/userattrs/userattrs/store/sqlstore"
)

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

func open(ctx context.Context, cfg Config) (_ *Store, err error) {
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
	// What a merge or an erasure deletes is overwritten in its page, not
	// left in free space where it could be read from the file later: an
	// erased value must leave the file (see Erase).
	writeParams.Add("_pragma", "secure_delete(on)")
	write, err := sql.Open("sqlite", "file:"+cfg.Path+"?"+writeParams.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open: %w", err)
	}
	// SQLite allows one writer at a time; a single connection makes writers
	// queue in the pool instead of spinning on SQLITE_BUSY.
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)

	s := &Store{write: write}
	// Whatever fails from here closes what was opened.
	defer func() {
		if err != nil {
			if s.read != nil {
				s.read.Close()
			}
			write.Close()
		}
	}()
	if err := s.migrate(ctx); err != nil {
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
		return nil, fmt.Errorf("sqlite: open readers: %w", err)
	}
	read.SetMaxOpenConns(cfg.Readers)
	read.SetMaxIdleConns(cfg.Readers)
	s.read = read
	if s.get, err = read.PrepareContext(ctx, selectAttributes); err != nil {
		return nil, fmt.Errorf("sqlite: prepare: %w", mapError(err))
	}
	for _, p := range []struct {
		stmt  **sql.Stmt
		query string
	}{{&s.lockRow, selectAttributes}, {&s.upsert, upsertAttribute}, {&s.remove, deleteAttribute}, {&s.probe, probeWrite},
		{&s.countUsage, countUsage}, {&s.oldest, oldestRecords}, {&s.trimRecords, trimRecords}} {
		if *p.stmt, err = write.PrepareContext(ctx, p.query); err != nil {
			return nil, fmt.Errorf("sqlite: prepare: %w", mapError(err))
		}
	}
	s.eventsOn, s.bounds = cfg.Events, cfg.HistoryBounds
	s.records, s.events = map[int]*sql.Stmt{}, map[int]*sql.Stmt{}
	type sizedInsert struct {
		stmts                  map[int]*sql.Stmt
		insert, values, suffix string
	}
	inserts := []sizedInsert{{s.records, insertRecords, recordValues, ""}}
	if cfg.Events {
		// Without events no event is ever inserted: nothing to prepare.
		inserts = append(inserts, sizedInsert{s.events, insertEvents, eventValues, ""})
	}
	for n := 1; n <= maxBatch; n *= 2 {
		for _, p := range inserts {
			if p.stmts[n], err = write.PrepareContext(ctx, p.insert+strings.Repeat(p.values+",", n-1)+p.values+p.suffix); err != nil {
				return nil, fmt.Errorf("sqlite: prepare: %w", mapError(err))
			}
		}
	}
	knownUsers := cmp.Or(cfg.KnownUsers, 16384)
	s.known = &knowledge{users: bounded.New[userattrs.Attributes](knownUsers, cmp.Or(cfg.KnownBytes, 16<<20)),
		usages: bounded.New[sqlstore.Usage](knownUsers, knownUsers)}
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
