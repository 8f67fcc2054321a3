package postgres_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/rs/xid"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/internal/testutil"
	"github.com/userattrs/userattrs/store/postgres"
)

// What docs/privacy.md tells operators: after an erasure the deleted rows'
// bytes stay in the tables' files until VACUUM FULL rewrites them (a plain
// VACUUM marks the space free, and leaves them); after it, and a
// checkpoint, none of the values the user ever had is in the files of the
// store's tables, indexes and TOAST, while another user's are.
func TestErasedValuesLeaveTheFilesWithVacuumFull(t *testing.T) {
	srv := pgtest.Shared(t)
	dataDir, ok := srv.DataDir()
	if !ok {
		t.Skip("the server's files are not on this machine")
	}
	url := srv.NewDatabase(t)
	s := mustOpen(t, postgres.Config{URL: url, Migrate: true, Events: true})
	svc := userattrs.NewService(s, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits})
	ctx := context.Background()
	user, marker := xid.New().String(), xid.New().String()
	var erased []string
	kept := "keep-" + marker
	for i := range 40 {
		v := fmt.Sprintf("erase-%s-%03d", marker, i)
		erased = append(erased, v)
		if err := svc.Merge(ctx, user, userattrs.Patch{{Key: "phone", Values: []string{v}}}, userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	if err := svc.Merge(ctx, "other", userattrs.Patch{{Key: "phone", Values: []string{kept}}}, userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Erase(ctx, user); err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	files := func() []string {
		t.Helper()
		// Every relation of the store's schema, with its TOAST relation and
		// index, and every fork of each.
		rows, _ := conn.Query(ctx, `SELECT pg_relation_filepath(c.oid) FROM pg_class c
			WHERE c.relnamespace = current_schema()::regnamespace AND pg_relation_filepath(c.oid) IS NOT NULL
			UNION SELECT pg_relation_filepath(t.oid) FROM pg_class c JOIN pg_class t ON t.oid = c.reltoastrelid
			WHERE c.relnamespace = current_schema()::regnamespace
			UNION SELECT pg_relation_filepath(i.indexrelid) FROM pg_class c JOIN pg_index i ON i.indrelid = c.reltoastrelid
			WHERE c.relnamespace = current_schema()::regnamespace`)
		rels, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		var paths []string
		for _, rel := range rels {
			forks, _ := filepath.Glob(filepath.Join(dataDir, rel) + "*")
			paths = append(paths, forks...)
		}
		return paths
	}
	holding := func() map[string][]string {
		t.Helper()
		if _, err := conn.Exec(ctx, "CHECKPOINT"); err != nil {
			t.Fatal(err)
		}
		found := map[string][]string{}
		for _, f := range files() {
			in, err := testutil.FilesHolding(f, append(erased, kept))
			if err != nil && !os.IsNotExist(err) {
				t.Fatal(err)
			}
			for v, fs := range in {
				found[v] = append(found[v], fs...)
			}
		}
		return found
	}
	if found := holding(); len(found) < 2 {
		t.Fatalf("before VACUUM FULL the dead rows hold the erased values, found %d values", len(found))
	}
	if _, err := conn.Exec(ctx, "VACUUM FULL user_attributes, attribute_history, event_outbox, event_parked"); err != nil {
		t.Fatal(err)
	}
	found := holding()
	for _, v := range erased {
		if len(found[v]) > 0 {
			t.Errorf("erased value %s is still in %v", v, found[v])
		}
	}
	if len(found[kept]) == 0 {
		t.Fatal("another user's value is in no file: the search cannot see the tables")
	}
}

// A job's lock is one instance's at a time, on any store value on the
// database, until it unlocks.
func TestJobLock(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	a := mustOpen(t, postgres.Config{URL: url, Migrate: true})
	b := mustOpen(t, postgres.Config{URL: url})
	ctx := context.Background()
	unlock, ok, err := a.TryLock(ctx, "reconcile")
	if err != nil || !ok {
		t.Fatalf("the first lock: %v %v", ok, err)
	}
	if _, ok, err := b.TryLock(ctx, "reconcile"); err != nil || ok {
		t.Fatalf("a second instance took a held lock: %v %v", ok, err)
	}
	if unlockOther, ok, err := b.TryLock(ctx, "another-job"); err != nil || !ok {
		t.Fatalf("another job's lock: %v %v", ok, err)
	} else {
		unlockOther()
	}
	unlock()
	if unlock, ok, err := b.TryLock(ctx, "reconcile"); err != nil || !ok {
		t.Fatalf("after unlock: %v %v", ok, err)
	} else {
		unlock()
	}
}
