// Package postgres keeps attributes in PostgreSQL, for several service
// instances sharing one database.
package postgres

import (
	"cmp"
	"context"
	"embed"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"slices"
	"strings"
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
//
// Merges are group-committed: a few writers each apply the merges waiting
// in one transaction (see sqlstore.Batcher), which locks the batch's rows
// in one statement, in the order of their user ids. Every instance locks
// rows in that same order, so batches on any instances wait for each other
// but never deadlock, and a merge on one instance and a merge of the same
// user on another still take turns on the row lock.
type Store struct {
	pool    *pgxpool.Pool
	reads   *sqlstore.Batcher
	writes  *sqlstore.Batcher
	timeout time.Duration // of one batch's transaction
	events  bool          // a change writes its event to the outbox
	bounds  userattrs.HistoryBounds
}

var _ userattrs.Store = (*Store)(nil)

// DefaultMaxConns is the pool size when neither Config nor the URL's
// pool_max_conns sets one.
const DefaultMaxConns = 10

// DefaultWriters is how many batches of merges one instance commits at
// once: enough that a batch fills while another waits for its commit, few
// enough to leave the pool's other connections to reads.
const DefaultWriters = 4

// DefaultReaders is how many batches of reads one instance runs at once.
const DefaultReaders = 4

// maxBatch bounds how many merges share one transaction.
const maxBatch = 128

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
			return func(ctx context.Context, spec string, env store.Env) (userattrs.Store, error) {
				return Open(ctx, Config{URL: spec, MaxConns: int32(maxConns), Migrate: env.AutoMigrate, Timeout: env.Timeout, Events: env.Events,
					HistoryBounds: env.HistoryBounds})
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
	// Writers is how many batches of merges commit at once, and Readers
	// how many batches of reads run at once (defaults DefaultWriters and
	// DefaultReaders, at most the pool's size each).
	Writers, Readers int
	// Timeout bounds one batch's transaction (default 5s): a batch serves
	// many requests, so no one request's context may end it.
	Timeout time.Duration
	// Events: every change also writes its change event to the outbox, in
	// its transaction, for the dispatchers of every instance to deliver.
	Events bool
	// HistoryBounds bound each user's history (the zero value: none).
	HistoryBounds userattrs.HistoryBounds
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
	s := &Store{pool: pool, timeout: cmp.Or(cfg.Timeout, 5*time.Second), events: cfg.Events, bounds: cfg.HistoryBounds}
	if err := s.migrate(ctx, cfg.Migrate); err != nil {
		pool.Close()
		return nil, err
	}
	s.writes = sqlstore.NewBatcher(min(cmp.Or(cfg.Writers, DefaultWriters), int(pcfg.MaxConns)), maxBatch, s.commit)
	s.reads = sqlstore.NewBatcher(min(cmp.Or(cfg.Readers, DefaultReaders), int(pcfg.MaxConns)), maxBatch, s.fetch)
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

// Close lets the writers finish the batches they took, then closes the
// pool once the connections in use are back.
func (s *Store) Close() error {
	s.writes.Close()
	s.reads.Close()
	s.pool.Close()
	return nil
}

// Capabilities: every instance on the database shares it, durably, with
// a history, and an outbox when events are on.
func (s *Store) Capabilities() userattrs.Capabilities {
	return userattrs.Capabilities{SharedAcrossInstances: true, Durable: true, Outbox: s.events}
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	if s.writes.Closed() {
		return userattrs.ErrClosed
	}
	return mapError(s.pool.Ping(ctx))
}

// Get returns the attributes of user; a user never written has none.
//
// Concurrent reads share a query: a few readers each take the reads
// waiting, up to a batch, and fetch their users in one query (see
// sqlstore.Batcher), which costs the database about what one read does.
// The query starts after each of its reads was asked for, so each sees
// every merge acknowledged before it, through any instance.
func (s *Store) Get(ctx context.Context, user string) (userattrs.Attributes, error) {
	if s.writes.Closed() {
		return nil, userattrs.ErrClosed
	}
	r := &read{}
	if err := s.reads.Do(ctx, user, nil, r); err != nil {
		return nil, err
	}
	return r.attrs, nil
}

// read is where a reader puts what it fetched for one Get.
type read struct{ attrs userattrs.Attributes }

const selectUsers = "SELECT user_id, attributes FROM user_attributes WHERE user_id = ANY($1)"

// usersOf returns the users of a batch, each once, in the order every
// batch locks rows in.
func usersOf(batch []*sqlstore.Merge) []string {
	users := make([]string, 0, len(batch))
	for _, m := range batch {
		users = append(users, m.User)
	}
	slices.Sort(users)
	return slices.Compact(users)
}

// fetch reads the users of a batch of reads in one query.
func (s *Store) fetch(batch []*sqlstore.Merge) ([]error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	users := usersOf(batch)
	columns := make(map[string][]byte, len(users))
	rows, _ := s.pool.Query(ctx, selectUsers, users)
	var user string
	var column []byte
	if _, err := pgx.ForEachRow(rows, []any{&user, &column}, func() error {
		columns[user] = slices.Clone(column)
		return nil
	}); err != nil {
		return nil, mapError(err)
	}
	outcomes := make([]error, len(batch))
	for i, m := range batch {
		m.Prepared.(*read).attrs, outcomes[i] = sqlstore.Decode(columns[m.User])
	}
	return outcomes, nil
}

// Update hands the merge to a writer and returns once the transaction
// that applied it has committed (see sqlstore.Batcher).
func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	return s.writes.Do(ctx, user, update, nil)
}

const (
	// lockRows locks the rows of a batch's users in the order of their
	// ids: the order every batch on every instance takes its locks in.
	lockRows = `SELECT user_id, attributes, history_records, history_bytes FROM user_attributes WHERE user_id = ANY($1)
		ORDER BY user_id FOR UPDATE`
	// createRows gives users their first row, so that there is a row to
	// lock; it commits on its own, holding no other lock, and leaves rows
	// another instance created as they are.
	createRows = `INSERT INTO user_attributes (user_id, attributes)
		SELECT id, '{}' FROM unnest($1::text[]) AS id ORDER BY id ON CONFLICT (user_id) DO NOTHING`
	saveRows = `UPDATE user_attributes AS u SET attributes = v.attributes, updated_at = now(),
			history_records = v.records, history_bytes = v.bytes
		FROM unnest($1::text[], $2::text[], $3::int[], $4::bigint[]) AS v(user_id, attributes, records, bytes)
		WHERE u.user_id = v.user_id`
)

// commit applies a batch in one transaction. Users without a row get one
// first, in a transaction of its own: inserting inside the batch's would
// take their locks out of order. Rows are never deleted (an empty user
// keeps an empty row), so a second attempt finds them all.
func (s *Store) commit(batch []*sqlstore.Merge) ([]error, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	users := usersOf(batch)
	outcomes := make([]error, len(batch))
	for attempt := 0; ; attempt++ {
		missing, err := s.apply(ctx, batch, users, outcomes)
		if err != nil || len(missing) == 0 {
			return outcomes, err
		}
		if attempt > 0 {
			return nil, fmt.Errorf("%w: postgres: the rows of %d users vanished while a merge ran", userattrs.ErrUnavailable, len(missing))
		}
		if _, err := s.pool.Exec(ctx, createRows, missing); err != nil {
			return nil, mapError(err)
		}
	}
}

// apply runs the batch in a transaction that locks the rows of users, or
// returns the users that have none without changing anything.
//
// The transaction takes two round trips: BEGIN with the locking read, and
// the write with COMMIT, each pair sent as one pipeline. A connection left
// inside a transaction by a failure is closed when it goes back to the
// pool, which rolls the transaction back.
func (s *Store) apply(ctx context.Context, batch []*sqlstore.Merge, users []string, outcomes []error) (missing []string, err error) {
	// Updaters' panics are their merges' errors (userattrs.Next); one
	// anywhere else fails the batch, not the process.
	defer userattrs.RecoverPanic(&err)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, mapError(err)
	}
	defer conn.Release()
	locked := &lockedRows{current: make(map[string]lockedRow, len(users)), journal: sqlstore.NewJournal()}
	var user string
	var column []byte
	var usage sqlstore.Usage
	read := &pgx.Batch{}
	read.Queue("BEGIN")
	read.Queue(lockRows, users).Query(func(rows pgx.Rows) error {
		_, err := pgx.ForEachRow(rows, []any{&user, &column, &usage.Records, &usage.Bytes}, func() error {
			attrs, err := sqlstore.Decode(column)
			locked.current[user] = lockedRow{attrs: attrs, err: err, usage: usage}
			return nil
		})
		return err
	})
	if err := conn.SendBatch(ctx, read).Close(); err != nil {
		return nil, mapError(err)
	}
	for _, u := range users {
		if _, ok := locked.current[u]; !ok {
			missing = append(missing, u)
		}
	}
	if len(missing) > 0 {
		_, err := conn.Exec(ctx, "ROLLBACK")
		return missing, mapError(err)
	}
	for i, m := range batch {
		outcomes[i] = sqlstore.Apply(ctx, locked, m)
	}
	write := &pgx.Batch{}
	if len(locked.saved) > 0 {
		if err := s.queueJournal(ctx, conn, write, locked); err != nil {
			return nil, err
		}
		n := len(locked.saved)
		ids, columns, records, bytes := make([]string, 0, n), make([]string, 0, n), make([]int32, 0, n), make([]int64, 0, n)
		for _, u := range locked.saved {
			row := locked.current[u]
			ids = append(ids, u)
			columns = append(columns, string(sqlstore.Encode(row.attrs)))
			records, bytes = append(records, int32(row.usage.Records)), append(bytes, row.usage.Bytes)
		}
		write.Queue(saveRows, ids, columns, records, bytes)
	}
	write.Queue("COMMIT")
	return nil, mapError(conn.SendBatch(ctx, write).Close())
}

// lockedRows are the rows a batch's transaction holds locked; merges of
// one user in one batch see the batch's earlier ones.
type lockedRows struct {
	current map[string]lockedRow
	saved   []string // users whose rows the transaction writes, once each
	journal *sqlstore.Journal
}

type lockedRow struct {
	attrs userattrs.Attributes
	err   error          // a column that did not decode: that user's merges fail
	usage sqlstore.Usage // of the user's history, the batch's records included once journaled
	saved bool
}

func (r *lockedRows) LoadForUpdate(_ context.Context, user string) (userattrs.Attributes, error) {
	row := r.current[user]
	return row.attrs, row.err
}

// Save keeps the row of a user whose attributes are now empty: deleting it
// would let a merge waiting on its lock find no row at all.
func (r *lockedRows) Save(_ context.Context, user string, _, next userattrs.Attributes, rec *userattrs.Record) error {
	if !r.current[user].saved {
		r.saved = append(r.saved, user)
	}
	r.current[user] = lockedRow{attrs: next, saved: true, usage: r.current[user].usage}
	r.journal.Add(rec)
	return nil
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
