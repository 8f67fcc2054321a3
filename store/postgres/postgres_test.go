package postgres_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/xid"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/store/conformance"
	"github.com/userattrs/userattrs/store/postgres"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func mustOpen(t *testing.T, cfg postgres.Config) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), cfg)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := pgtest.Shared(t)
	conformance.RunTests(t, func(t *testing.T) conformance.Harness {
		url := srv.NewDatabase(t)
		return conformance.Harness{
			Store:   mustOpen(t, postgres.Config{URL: url, Migrate: true, Events: true}),
			Reopen:  func(t *testing.T) userattrs.Store { return mustOpen(t, postgres.Config{URL: url, Events: true}) },
			NewUser: func(*testing.T) string { return xid.New().String() },
			Bounded: func(t *testing.T, b userattrs.HistoryBounds) userattrs.Store {
				return mustOpen(t, postgres.Config{URL: srv.NewDatabase(t), Migrate: true, HistoryBounds: b, Events: true})
			},
		}
	})
}

// The URL's pool_max_conns holds unless the configuration sets a size.
func TestPoolSize(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	cases := []struct {
		url      string
		maxConns int32
		want     int32
	}{
		{url, 0, postgres.DefaultMaxConns},
		{url + "&pool_max_conns=3", 0, 3},
		{url + "&pool_max_conns=3", 7, 7},
	}
	for _, tc := range cases {
		s := mustOpen(t, postgres.Config{URL: tc.url, MaxConns: tc.maxConns, Migrate: true})
		if got := s.PoolSize(); got != tc.want {
			t.Errorf("pool_max_conns in URL %v, MaxConns %d: pool of %d, want %d", strings.Contains(tc.url, "pool_max_conns"), tc.maxConns, got, tc.want)
		}
	}
	if _, err := postgres.Open(context.Background(), postgres.Config{URL: url, MaxConns: -3}); err == nil {
		t.Error("a negative pool size opened")
	}
}

// Instances that start at once on a new database take turns migrating it.
func TestConcurrentMigrations(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			s, err := postgres.Open(context.Background(), postgres.Config{URL: url, Migrate: true})
			if err == nil {
				s.Close()
			}
			errs <- err
		}()
	}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatalf("concurrent start: %v", err)
		}
	}
}

// An instance told not to migrate refuses a schema with pending migrations
// and serves once `userattrs migrate` ran.
func TestMigrateSeparately(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	_, err := postgres.Open(context.Background(), postgres.Config{URL: url})
	if err == nil || !strings.Contains(err.Error(), "userattrs migrate") {
		t.Fatalf("open with pending migrations: %v", err)
	}
	if err := postgres.Migrate(context.Background(), url); err != nil {
		t.Fatal(err)
	}
	mustOpen(t, postgres.Config{URL: url})
}

// A database that cannot be reached is ErrUnavailable, soon, and the error
// never carries the password of the URL.
func TestUnreachable(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := postgres.Open(ctx, postgres.Config{URL: "postgres://user:hunter2secret@127.0.0.1:1/db?connect_timeout=2", Migrate: true})
	if err == nil {
		t.Fatal("opened a database that does not exist")
	}
	if !errors.Is(err, userattrs.ErrUnavailable) {
		t.Errorf("error %v is not ErrUnavailable", err)
	}
	if strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("error carries the password: %v", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("took %s", time.Since(start))
	}
	_, err = postgres.Open(ctx, postgres.Config{URL: "postgres://user:hunter2secret@host:notaport/db"})
	if err == nil || strings.Contains(err.Error(), "hunter2secret") {
		t.Errorf("invalid URL: %v", err)
	}
}

// A transaction that rolls back after the updaters ran leaves neither the
// changes of its batch nor their records nor their events, whether the
// database refuses the change (its row) or its record; the store goes on.
func TestRolledBackMergeLeavesNoRecord(t *testing.T) {
	for _, table := range []string{"user_attributes", "attribute_history"} {
		t.Run("refused on "+table, func(t *testing.T) { rollBack(t, table) })
	}
}

func rollBack(t *testing.T, table string) {
	url := pgtest.Shared(t).NewDatabase(t)
	s := mustOpen(t, postgres.Config{URL: url, Migrate: true, Events: true})
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	// The user's row exists, so the merge reaches the batch's transaction,
	// and fails there: at its row's write or at its record.
	if _, err := conn.Exec(ctx, "INSERT INTO user_attributes (user_id, attributes) VALUES ('doomed', '{}')"); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `CREATE FUNCTION refuse_doomed() RETURNS trigger LANGUAGE plpgsql AS
		$$ BEGIN IF NEW.user_id = 'doomed' THEN RAISE EXCEPTION 'refused'; END IF; RETURN NEW; END $$;
		CREATE TRIGGER refuse_doomed BEFORE INSERT OR UPDATE ON `+table+` FOR EACH ROW EXECUTE FUNCTION refuse_doomed()`); err != nil {
		t.Fatal(err)
	}
	set := func(v string) func(userattrs.Attributes) (userattrs.Attributes, error) {
		return func(userattrs.Attributes) (userattrs.Attributes, error) { return userattrs.Attributes{"k": {v}}, nil }
	}
	if err := s.Update(ctx, "doomed", set("1")); err == nil {
		t.Fatal("a refused write succeeded")
	}
	if err := s.Update(ctx, "fine", set("1")); err != nil {
		t.Fatal(err)
	}
	var records, events int
	if err := conn.QueryRow(ctx, "SELECT (SELECT count(*) FROM attribute_history WHERE user_id = 'doomed'), "+
		"(SELECT count(*) FROM event_outbox WHERE record LIKE '%doomed%')").Scan(&records, &events); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, "doomed"); err != nil || len(got) != 0 || records != 0 || events != 0 {
		t.Fatalf("after the rollback: attributes %v (%v), %d records, %d events", got, err, records, events)
	}
	if h, err := s.History(ctx, "fine", userattrs.HistoryQuery{Limit: 10}); err != nil || len(h) != 1 {
		t.Fatalf("the next merge's record: %v, %v", h, err)
	}
}
