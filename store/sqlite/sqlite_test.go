package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/rs/xid"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/conformance"
	"github.com/userattrs/userattrs/store/sqlite"
)

func mustOpen(tb testing.TB, path string) *sqlite.Store {
	tb.Helper()
	s, err := sqlite.Open(context.Background(), sqlite.Config{Path: path})
	if err != nil {
		tb.Fatalf("open %s: %v", path, err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	conformance.RunTests(t, func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			Store:   mustOpen(t, filepath.Join(t.TempDir(), "db", "userattrs.db")),
			NewUser: func(*testing.T) string { return xid.New().String() },
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

// Attribute values are personal data: the database and its WAL and
// shared-memory files are the owner's only, whatever the umask.
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
	want := map[string]os.FileMode{"": 0o700, "userattrs.db": 0o600, "userattrs.db-wal": 0o600, "userattrs.db-shm": 0o600}
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
