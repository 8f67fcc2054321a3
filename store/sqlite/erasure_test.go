package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/rs/xid"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/testutil"
	"github.com/userattrs/userattrs/store/sqlite"
)

// After an erasure, none of the values the user ever had is left in the
// database's files, while the store runs: not in the attributes' pages,
// the history's, the outbox's or the parked events', nor in the WAL. The
// values of the other users, written in between, still are: the search
// finds what is there.
func TestErasureLeavesNoValueInTheFiles(t *testing.T) {
	dir := t.TempDir()
	s := mustOpenWith(t, sqlite.Config{Path: filepath.Join(dir, "userattrs.db"), Events: true})
	svc := userattrs.NewService(s, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits})
	ctx := context.Background()
	user, marker := xid.New().String(), xid.New().String()
	var erased, kept []string
	for i := range 60 {
		// The user's phone number changes, and other users' merges land
		// in between, on the same pages.
		v := fmt.Sprintf("erase-%s-%03d", marker, i)
		erased = append(erased, v)
		if err := svc.Merge(ctx, user, userattrs.Patch{{Key: "phone", Values: []string{v}}}, userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
		other := fmt.Sprintf("keep-%s-%03d", marker, i)
		kept = append(kept, other)
		if err := svc.Merge(ctx, fmt.Sprintf("other-%d", i%7), userattrs.Patch{{Key: "phone", Values: []string{other}}}, userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
	}
	// One of the user's events is parked, the others wait.
	if _, err := s.Deliver(ctx, 1, func(b userattrs.OutboxBatch) userattrs.Outcome {
		return userattrs.Outcome{Parked: []userattrs.Parking{{Seq: b.Events[0].Seq, Attempts: 1, Reason: "test"}}}
	}); err != nil {
		t.Fatal(err)
	}
	if found, err := testutil.FilesHolding(dir, erased[:1]); err != nil || len(found) != 1 {
		t.Fatalf("before the erasure the search finds the first value in %v (%v)", found, err)
	}
	if err := svc.Erase(ctx, user); err != nil {
		t.Fatal(err)
	}
	found, err := testutil.FilesHolding(dir, append(erased, kept[len(kept)-1]))
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range erased {
		if len(found[v]) > 0 {
			t.Errorf("erased value %s is still in %v", v, found[v])
		}
	}
	if len(found[kept[len(kept)-1]]) == 0 {
		t.Fatal("another user's value is in no file: the search cannot see the database")
	}
}
