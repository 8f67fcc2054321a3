package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/xid"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/disktest"
	"github.com/userattrs/userattrs/store/conformance"
	"github.com/userattrs/userattrs/store/sqlite"
)

func mustOpen(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	return mustOpenWith(tb, sqlite.Config{Path: path})
}

func mustOpenWith(tb testing.TB, cfg sqlite.Config) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), cfg)
	if err != nil {
		tb.Fatalf("open %s: %v", cfg.Path, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	conformance.RunTests(t, func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			Store:   mustOpenWith(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "db", "userattrs.db"), Events: true}),
			NewUser: func(*testing.T) string { return xid.New().String() },
			Bounded: func(t *testing.T, b userattrs.HistoryBounds) userattrs.Store {
				return mustOpenWith(t, sqlite.Config{Path: filepath.Join(t.TempDir(), "bounded.db"), HistoryBounds: b, Events: true})
			},
		}
	})
}

// A second store on a file that one holds is refused, with a reason that
// names the file and the way to run several instances; once the first
// closes, the file opens again.
func TestOneProcessPerFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "userattrs.db")
	first := mustOpen(t, path)
	_, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "PostgreSQL") {
		t.Fatalf("second open: %v", err)
	}
	first.Close()
	mustOpen(t, path)
}

// Attribute values are personal data: the database and its WAL are the
// owner's only, whatever the umask, and the WAL index lives in memory, not
// in a shared-memory file (see the unix-excl VFS in open).
func TestFileModes(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "data")
	s := mustOpen(t, filepath.Join(dir, "userattrs.db"))
	if err := s.Update(context.Background(), "alice", func(userattrs.Attributes) (userattrs.Attributes, error) {
		return userattrs.Attributes{"a": {"1"}}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "userattrs.db-shm")); !os.IsNotExist(err) {
		t.Errorf("a shared-memory file exists: %v", err)
	}
	want := map[string]os.FileMode{"": 0o700, "userattrs.db": 0o600, "userattrs.db-wal": 0o600}
	for name, mode := range want {
		info, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := info.Mode().Perm(); got != mode {
			t.Errorf("%s: mode %o, want %o", filepath.Join("data", name), got, mode)
		}
	}
}

// A reopened database has what was committed, and the connection runs with
// the settings that make a commit survive a power cut.
func TestDurableSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "userattrs.db")
	s := mustOpen(t, path)
	svc := userattrs.NewService(s, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits})
	ctx := context.Background()
	if err := svc.Merge(ctx, "alice", userattrs.Patch{{Key: "k", Values: []string{"v"}}}, userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	mode, sync := s.Settings(ctx)
	if mode != "wal" || sync != 2 {
		t.Fatalf("journal_mode=%s synchronous=%d, want wal and 2 (FULL)", mode, sync)
	}
	s.Close()

	again := mustOpen(t, path)
	got, err := again.Get(ctx, "alice")
	if err != nil || !got.Equal(userattrs.Attributes{"k": {"v"}}) {
		t.Fatalf("after reopen: %v %v", got, err)
	}
}

func set(s *sqlite.Store, user, value string) error {
	return s.Update(context.Background(), user, func(userattrs.Attributes) (userattrs.Attributes, error) {
		return userattrs.Attributes{"v": {value}}, nil
	})
}

// A database file deleted under the running store is noticed: readiness
// fails and no write is acknowledged into a file no restart would find.
func TestDeletedFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "userattrs.db")
	s := mustOpen(t, path)
	ctx := context.Background()
	if err := set(s, "alice", "1"); err != nil || s.Ping(ctx) != nil {
		t.Fatalf("before: %v, ping %v", err, s.Ping(ctx))
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := s.Ping(ctx); !errors.Is(err, userattrs.ErrUnavailable) || !strings.Contains(err.Error(), "no longer the database file") {
		t.Fatalf("ping after the file was deleted: %v", err)
	}
	if err := set(s, "bob", "1"); !errors.Is(err, userattrs.ErrUnavailable) {
		t.Fatalf("write after the file was deleted: %v, want ErrUnavailable", err)
	}
}

// A full disk fails readiness as it fails writes, on every probe, and
// readiness comes back by itself once there is room; a healthy store's
// probes write nothing. On the full disk, events the sinks took are
// deleted all the same, in the room the store set aside.
func TestFullDisk(t *testing.T) {
	dir := disktest.Small(t, 4096)
	path := filepath.Join(dir, "userattrs.db")
	open := func() *sqlite.Store {
		return mustOpenWith(t, sqlite.Config{Path: path, Events: true, Reserve: 512 << 10})
	}
	s := open()
	ctx := context.Background()
	for range 3 {
		if err := s.Ping(ctx); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	if probes := query(t, path, "SELECT count(*) FROM store_probe"); probes != "0" {
		t.Fatalf("healthy pings wrote %s probe rows", probes)
	}
	s = open()
	for i := range 5 {
		if err := set(s, "early"+strconv.Itoa(i), "1"); err != nil {
			t.Fatal(err)
		}
	}
	filler := filepath.Join(dir, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	f.Write(make([]byte, 8<<20)) // fails with ENOSPC once the tmpfs is full
	f.Close()
	big := strings.Repeat("x", 60<<10)
	failed := 0
	for i := range 20 {
		if err := set(s, "user"+strconv.Itoa(i), big); err != nil {
			if !errors.Is(err, userattrs.ErrUnavailable) {
				t.Fatalf("write on a full disk: %v, want ErrUnavailable", err)
			}
			failed++
		}
	}
	if failed == 0 {
		t.Fatal("every write succeeded on a full disk")
	}
	for i := range 24 {
		if err := s.Ping(ctx); !errors.Is(err, userattrs.ErrUnavailable) || !strings.Contains(err.Error(), "full") {
			t.Fatalf("ping %d on a full disk: %v, want ErrUnavailable saying the disk is full", i, err)
		}
	}
	// The sinks take every event: they are deleted, not sent again.
	var outbox userattrs.Outbox = s
	for {
		n, err := outbox.Deliver(ctx, 100, func(b userattrs.OutboxBatch) (o userattrs.Outcome) {
			for _, e := range b.Events {
				o.Delivered = append(o.Delivered, e.Seq)
			}
			return o
		})
		if err != nil {
			t.Fatalf("delivering on a full disk: %v", err)
		}
		if n == 0 {
			break
		}
	}
	if stats, err := outbox.OutboxStats(ctx); err != nil || stats.Depth != 0 {
		t.Fatalf("outbox after delivery on a full disk: %+v, %v", stats, err)
	}
	os.Remove(filler)
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("ping once there is room: %v", err)
	}
	if fi, err := os.Stat(path + "-reserve"); err != nil || fi.Size() != 512<<10 {
		t.Fatalf("the reserve once there is room: %v, %v", fi, err)
	}
	if err := set(s, "after", "1"); err != nil {
		t.Fatalf("write once there is room: %v", err)
	}
	s.Close()
	if check := query(t, path, "PRAGMA integrity_check"); check != "ok" {
		t.Fatalf("integrity_check: %s", check)
	}
}

// query runs q on the database at path, which no store holds, and returns
// the first column of its first row.
func query(t *testing.T, path, q string) string {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v string
	if err := db.QueryRow(q).Scan(&v); err != nil {
		t.Fatalf("%s: %v", q, err)
	}
	return v
}

// What a user's history holds is counted in memory: after a restart, and
// once the writer's knowledge of the user is gone, it is counted again
// from the rows, so the bound still holds at the same place.
func TestHistoryBoundAfterRestartAndEviction(t *testing.T) {
	path := filepath.Join(t.TempDir(), "userattrs.db")
	bounds := userattrs.HistoryBounds{MaxRecords: 3}
	ctx := context.Background()
	changes := 0
	merge := func(s *sqlite.Store, user string) {
		t.Helper()
		changes++
		svc := userattrs.NewService(s, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits})
		if err := svc.Merge(ctx, user, userattrs.Patch{{Key: "k", Values: []string{strconv.Itoa(changes)}}}, userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	s := mustOpenWith(t, sqlite.Config{Path: path, HistoryBounds: bounds})
	merge(s, "alice") // 1
	merge(s, "alice") // 2
	s.Close()

	// A knowledge of one user: merging bob evicts alice's count.
	s = mustOpenWith(t, sqlite.Config{Path: path, HistoryBounds: bounds, KnownUsers: 1})
	merge(s, "alice") // 3
	merge(s, "bob")   // 4
	merge(s, "alice") // 5
	merge(s, "alice") // 6
	records, err := s.History(ctx, "alice", userattrs.HistoryQuery{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, r := range records {
		values = append(values, r.Set["k"][0])
	}
	if strings.Join(values, ",") != "6,5,3" {
		t.Fatalf("alice's history after a restart and an eviction: %v; want the newest 3 of her changes, 6,5,3", values)
	}
}
