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
	"time"

	"github.com/pressly/goose/v3"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps attributes in a SQLite database in WAL mode: one connection
// writes, a pool of connections reads beside it.
type Store struct {
	write *sql.DB
	read  *sql.DB
}

var _ userattrs.Store = (*Store)(nil)

// Config configures the SQLite store.
type Config struct {
	// Path is the database file; its directory is created if missing.
	Path string
	// Readers is the size of the read connection pool (default 4).
	Readers int
}

// Open opens (creating if needed) the database at cfg.Path and brings its
// schema up to date.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Path == "" || strings.ContainsAny(cfg.Path, "?#") {
		return nil, fmt.Errorf("sqlite: invalid database path %q", cfg.Path)
	}
	if cfg.Readers <= 0 {
		cfg.Readers = 4
	}
	if dir := filepath.Dir(cfg.Path); dir != "" {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("sqlite: create database directory: %w", err)
		}
	}
	// synchronous=FULL makes every commit wait for fsync of the WAL: a 204
	// must survive a power cut, which NORMAL does not promise in WAL mode.
	// Writes begin IMMEDIATE so that a merge holds the write lock from its
	// read to its write.
	params := url.Values{
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

// Close closes both connection pools.
func (s *Store) Close() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// Ping checks that the database answers a query.
func (s *Store) Ping(ctx context.Context) error {
	var one int
	if err := s.read.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return mapError(err)
	}
	return nil
}

type queryer interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func load(ctx context.Context, q queryer, user string) ([]byte, error) {
	var column []byte
	err := q.QueryRowContext(ctx, "SELECT attributes FROM user_attributes WHERE user_id = ?", user).Scan(&column)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	return column, mapError(err)
}

// Get returns the attributes of user; a user never written has none.
func (s *Store) Get(ctx context.Context, user string) (userattrs.Attributes, error) {
	column, err := load(ctx, s.read, user)
	if err != nil {
		return nil, err
	}
	return sqlstore.Decode(column)
}

// Update runs update inside one IMMEDIATE transaction and returns once the
// commit is on disk.
func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return mapError(err)
	}
	defer tx.Rollback()
	if err := sqlstore.Apply(ctx, row{tx}, user, update); err != nil {
		return err
	}
	return mapError(tx.Commit())
}

// row is a user's row inside a write transaction. The transaction began
// IMMEDIATE and holds the database's write lock, which is what keeps other
// writers out between the load and the save.
type row struct{ tx *sql.Tx }

func (r row) LoadForUpdate(ctx context.Context, user string) ([]byte, error) {
	return load(ctx, r.tx, user)
}

func (r row) Save(ctx context.Context, user string, column []byte, empty bool) error {
	var err error
	if empty {
		_, err = r.tx.ExecContext(ctx, "DELETE FROM user_attributes WHERE user_id = ?", user)
	} else {
		_, err = r.tx.ExecContext(ctx, `INSERT INTO user_attributes (user_id, attributes, updated_at) VALUES (?, ?, ?)
			ON CONFLICT (user_id) DO UPDATE SET attributes = excluded.attributes, updated_at = excluded.updated_at`,
			user, column, time.Now().UnixMilli())
	}
	return mapError(err)
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
	if errors.Is(err, sql.ErrConnDone) || errors.Is(err, context.DeadlineExceeded) {
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
