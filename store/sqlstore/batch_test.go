package sqlstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
)

// Merges that arrive while a writer commits share its next commit, each
// gets its own outcome, and one whose caller gave up before a writer took
// it never reaches a commit.
func TestMergesShareACommit(t *testing.T) {
	first := make(chan struct{})
	release := make(chan struct{})
	var batches [][]string
	b := NewBatcher(1, 128, func(batch []*Merge) ([]error, error) {
		var users []string
		outcomes := make([]error, len(batch))
		for i, m := range batch {
			users = append(users, m.User)
			if m.User == "refused" {
				outcomes[i] = userattrs.ErrPreconditionFailed
			}
		}
		batches = append(batches, users)
		if len(batches) == 1 {
			close(first)
			<-release
		}
		return outcomes, nil
	})
	defer b.Close()
	keep := func(a userattrs.Attributes) (userattrs.Attributes, error) { return a, nil }
	done := make(chan error, 16)
	go func() { done <- b.Do(context.Background(), "first", keep, nil) }()
	<-first
	ctx, cancel := context.WithCancel(context.Background())
	gaveUp := make(chan error)
	go func() { gaveUp <- b.Do(ctx, "gave-up", keep, nil) }()
	for _, user := range []string{"a", "b", "refused", "c"} {
		go func() { done <- b.Do(context.Background(), user, keep, nil) }()
	}
	for len(b.merges) < 5 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-gaveUp; !errors.Is(err, userattrs.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("a merge given up before it was taken: %v", err)
	}
	close(release)
	refused := 0
	for range 5 {
		if err := <-done; errors.Is(err, userattrs.ErrPreconditionFailed) {
			refused++
		} else if err != nil {
			t.Fatal(err)
		}
	}
	if len(batches) != 2 || len(batches[1]) != 4 || refused != 1 {
		t.Fatalf("batches %q, %d refused; want the four merges that waited in one batch, one refused", batches, refused)
	}
}
