package sqlite

import (
	"context"
	"database/sql"
	"io/fs"
	"path/filepath"
	"sync"
	"testing"

	"github.com/pressly/goose/v3"

	"github.com/userattrs/userattrs"
)

// A database written with one row per user (migration 2) keeps every
// attribute, byte for byte, when it moves to one row per attribute, and
// the merges after it write only what they change.
func TestMigrateToAttributeRows(t *testing.T) {
	path := filepath.Join(t.TempDir(), "old.db")
	db, err := sql.Open("sqlite", "file:"+path)
	if err != nil {
		t.Fatal(err)
	}
	fsys, _ := fs.Sub(migrations, "migrations")
	p, err := goose.NewProvider(goose.DialectSQLite3, db, fsys)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := p.UpTo(ctx, 2); err != nil {
		t.Fatal(err)
	}
	// As the store of migration 2 wrote them: a BLOB of JSON text.
	old := map[string]string{
		"alice": `{"tos_accepted":["true"],"langs":["de","en"],"quote":["say \"hi\" \\ back"],"nul":["a\u0000b"],` +
			`"html":["<b>&</b>"],"sep":["x\u2028y"],"empty":[""],"ünï":["ç☃"]}`,
		"bob": `{"theme":["dark"]}`,
	}
	for user, column := range old {
		if _, err := db.Exec("INSERT INTO user_attributes (user_id, attributes, updated_at) VALUES (?, ?, 1)", user, []byte(column)); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	s, err := Open(ctx, Config{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	want := userattrs.Attributes{"tos_accepted": {"true"}, "langs": {"de", "en"}, "quote": {`say "hi" \ back`}, "nul": {"a\x00b"},
		"html": {"<b>&</b>"}, "sep": {"x\u2028y"}, "empty": {""}, "ünï": {"ç☃"}}
	got, err := s.Get(ctx, "alice")
	if err != nil || !got.Equal(want) {
		t.Fatalf("alice after the migration: %q, %v; want %q", got, err, want)
	}
	if got, _ := s.Get(ctx, "bob"); !got.Equal(userattrs.Attributes{"theme": {"dark"}}) {
		t.Fatalf("bob after the migration: %q", got)
	}
	var before, after int
	s.read.QueryRow("SELECT count(*) FROM user_attribute").Scan(&before)
	if before != len(want)+1 {
		t.Fatalf("%d attribute rows, want %d", before, len(want)+1)
	}
	err = s.Update(ctx, "alice", func(cur userattrs.Attributes) (userattrs.Attributes, error) {
		next := userattrs.Patch{{Key: "langs", BadIndex: -1}, {Key: "theme", Values: []string{"light"}, BadIndex: -1}}.Merged(cur)
		return next, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var updated int
	s.read.QueryRow("SELECT count(*) FROM user_attribute").Scan(&after)
	s.read.QueryRow("SELECT count(*) FROM user_attribute WHERE updated_at > 1").Scan(&updated)
	if after != before || updated != 1 {
		t.Fatalf("after removing one attribute and adding one: %d rows (was %d), %d rewritten (want 1)", after, before, updated)
	}
}

// The size the writer keeps up to date for each user it knows is the size
// counted afresh, after merges that add, change and remove attributes, in
// one batch and across batches.
func TestKnownSizes(t *testing.T) {
	s, err := Open(context.Background(), Config{Path: filepath.Join(t.TempDir(), "u.db")})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	patches := []userattrs.Patch{
		{{Key: "a", Values: []string{"1"}}, {Key: "bb", Values: []string{"22", "333"}}},
		{{Key: "a", Values: []string{"longer value"}}, {Key: "c", Values: []string{""}}},
		{{Key: "bb"}, {Key: "d", Values: []string{"x"}}},
		{{Key: "a"}, {Key: "c"}, {Key: "d"}},
	}
	for i, p := range patches {
		var wg sync.WaitGroup
		for _, user := range []string{"u1", "u2", "u1"} { // u1 twice in a batch, most likely
			wg.Go(func() {
				if err := s.Update(context.Background(), user, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
					return p.Merged(cur), nil
				}); err != nil {
					t.Error(err)
				}
			})
		}
		wg.Wait()
		// The writer's knowledge is the writer's: read it through a merge.
		done := make(chan struct{})
		err := s.Update(context.Background(), "probe", func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			for _, user := range []string{"u1", "u2"} {
				k, ok := s.known.lookup(user)
				if !ok || k.size != knownSize(user, k.attrs) {
					t.Errorf("after patch %d, %s: size %d kept, %d counted (%v)", i, user, k.size, knownSize(user, k.attrs), ok)
				}
			}
			close(done)
			return cur, nil
		})
		select {
		case <-done:
		default:
			t.Fatalf("the probe merge did not run: %v", err)
		}
	}
}
