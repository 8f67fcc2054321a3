// Package postgres keeps attributes in PostgreSQL, for several service
// instances sharing one database.
package postgres

import (
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
	"github.com/userattrs/userattrs/store/sqlstore"
)

//go:embed migrations/*.sql
var migrations embed.FS

// Store keeps attributes in a PostgreSQL database through a connection
// pool.
type Store struct {
	pool   *pgxpool.Pool
	closed atomic.Bool
}

var _ userattrs.Store = (*Store)(nil)

// DefaultMaxConns is the pool size when neither Config nor the URL's
// pool_max_conns sets one.
const DefaultMaxConns = 10

// Kind is the PostgreSQL store's row in the program's table of stores.
func Kind() store.Kind {
	return store.Kind{
		Name:  "postgres",
		Form:  "postgres://USER:PASSWORD@HOST:PORT/DB?sslmode=...",
		Match: store.Prefix("postgres://", "postgresql://"),
		Flags: func(fs *flag.FlagSet) store.Opener {
			var maxConns store.PositiveInt
			fs.Var(&maxConns, "postgres-max-conns", fmt.Sprintf(
				"size of the PostgreSQL connection pool (default: the URL's pool_max_conns, else %d)", DefaultMaxConns))
			migrate := fs.Bool("auto-migrate", true, "apply pending schema migrations at start (else: userattrs migrate)")
			return func(ctx context.Context, spec string, _ store.Env) (userattrs.Store, error) {
				return Open(ctx, Config{URL: spec, MaxConns: int32(maxConns), Migrate: *migrate})
			}
		},
		Migrate: Migrate,
	}
}

// Config configures the PostgreSQL store.
type Config struct {
	// URL is a postgres:// connection URL. It may hold a password: it is
	// never logged nor put in an error.
	URL string
	// MaxConns bounds the pool; 0 keeps the URL's pool_max_conns, or
	// DefaultMaxConns when the URL has none.
	MaxConns int32
	// Migrate applies pending schema migrations at Open. Without it, Open
	// fails while migrations are pending: run `userattrs migrate` first.
	Migrate bool
}

// Open connects to the database and checks (or brings up to date) its
// schema.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	pcfg, err := pgxpool.ParseConfig(cfg.URL)
	if err != nil {
		// pgx's message can quote the URL, password included.
		return nil, errors.New("postgres: the connection URL is not valid")
	}
	switch {
	case cfg.MaxConns < 0:
		return nil, errors.New("postgres: the pool size must be positive")
	case cfg.MaxConns > 0:
		pcfg.MaxConns = cfg.MaxConns
	case !strings.Contains(cfg.URL, "pool_max_conns="):
		pcfg.MaxConns = DefaultMaxConns
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second
	}
	// Find connections broken by a database restart soon, rather than on
	// the next request that draws them.
	pcfg.HealthCheckPeriod = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", mapError(err))
	}
	s := &Store{pool: pool}
	if err := s.migrate(ctx, cfg.Migrate); err != nil {
		pool.Close()
		return nil, err
	}
	return s, nil
}

// Migrate applies the pending schema migrations of the database at url.
func Migrate(ctx context.Context, url string) error {
	s, err := Open(ctx, Config{URL: url, MaxConns: 2, Migrate: true})
	if err != nil {
		return err
	}
	return s.Close()
}

func (s *Store) migrate(ctx context.Context, apply bool) error {
	fsys, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return err
	}
	// A lock row, not an advisory lock, makes instances that start at once
	// take turns: it works on Postgres-compatible databases too.
	locker, err := lock.NewPostgresTableLocker(lock.WithTableLockTimeout(500*time.Millisecond, 240))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	db := stdlib.OpenDBFromPool(s.pool)
	defer db.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, db, fsys, goose.WithLocker(locker))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if !apply {
		pending, err := p.HasPending(ctx)
		if err != nil {
			return fmt.Errorf("postgres: check migrations: %w", mapError(err))
		}
		if pending {
			return errors.New("postgres: the schema has pending migrations: run `userattrs migrate`")
		}
		return nil
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("postgres: migrate: %w", mapError(err))
	}
	return nil
}

// Close waits for the connections in use, then closes the pool.
func (s *Store) Close() error {
	s.closed.Store(true)
	s.pool.Close()
	return nil
}

// Capabilities: every instance on the database shares it, durably.
func (s *Store) Capabilities() userattrs.Capabilities {
	return userattrs.Capabilities{SharedAcrossInstances: true, Durable: true}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return userattrs.ErrClosed
	}
	return mapError(s.pool.Ping(ctx))
}

const selectAttributes = "SELECT attributes FROM user_attributes WHERE user_id = $1"

type queryer interface {
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

func load(ctx context.Context, q queryer, query, user string) ([]byte, error) {
	var column []byte
	err := q.QueryRow(ctx, query, user).Scan(&column)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	return column, mapError(err)
}

// Get returns the attributes of user; a user never written has none.
func (s *Store) Get(ctx context.Context, user string) (userattrs.Attributes, error) {
	if s.closed.Load() {
		return nil, userattrs.ErrClosed
	}
	column, err := load(ctx, s.pool, selectAttributes, user)
	if err != nil {
		return nil, err
	}
	return sqlstore.Decode(column)
}

// Update runs update in one transaction that holds the user's row lock from
// the read to the commit, so that merges on every instance take turns.
func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	if s.closed.Load() {
		return userattrs.ErrClosed
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return mapError(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := sqlstore.Apply(ctx, row{tx}, user, update); err != nil {
		return err
	}
	return mapError(tx.Commit(ctx))
}

type row struct{ tx pgx.Tx }

// LoadForUpdate makes sure the user has a row, so that there is a row to
// lock even for a user's first merge, and locks it. When two first merges
// race, the second insert waits for the first and then finds its row.
func (r row) LoadForUpdate(ctx context.Context, user string) ([]byte, error) {
	if _, err := r.tx.Exec(ctx, `INSERT INTO user_attributes (user_id, attributes) VALUES ($1, '{}')
		ON CONFLICT (user_id) DO NOTHING`, user); err != nil {
		return nil, mapError(err)
	}
	return load(ctx, r.tx, selectAttributes+" FOR UPDATE", user)
}

// Save keeps the row of a user whose attributes are now empty: deleting it
// would let a merge waiting on its lock find no row at all.
func (r row) Save(ctx context.Context, user string, column []byte, _ bool) error {
	_, err := r.tx.Exec(ctx, "UPDATE user_attributes SET attributes = $2, updated_at = now() WHERE user_id = $1", user, column)
	return mapError(err)
}

// mapError reports what says the database cannot serve now, rather than
// that the request is wrong, as ErrUnavailable: no connection, a dropped
// connection, a timeout, a server shutting down or out of resources.
func mapError(err error) error {
	if err == nil {
		return nil
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch pgErr.Code[:2] {
		case "08", // connection exception
			"40", // serialization failure, deadlock: retrying succeeds
			"53", // insufficient resources
			"57", // operator intervention: shutdown, cannot connect now
			"58": // system error: I/O
			return fmt.Errorf("%w: postgres: %w", userattrs.ErrUnavailable, err)
		}
		return fmt.Errorf("postgres: %w", err)
	}
	// Whatever the server did not report itself is the connection failing.
	return fmt.Errorf("%w: postgres: %w", userattrs.ErrUnavailable, err)
}

// PoolSize reports the most connections the pool opens.
func (s *Store) PoolSize() int32 { return s.pool.Config().MaxConns }

// Stat reports the connection pool: how many connections are open, and in
// use.
func (s *Store) Stat() *pgxpool.Stat { return s.pool.Stat() }
