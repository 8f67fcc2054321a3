package sqlite_test

import (
	"context"
	"path/filepath"
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
