package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/client"
)

// history prints the history of one user, newest first, a JSON record per
// line: from the store, the operator's view of what the admin API's
// history route serves, without the policy (every attribute, hidden ones
// included); with --url, through that route.
func history(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs history", flag.ContinueOnError)
	f := newUserDataFlags(fs, "the user whose changes are listed")
	cfg, user := &f.store, f.user
	limit := fs.Int("limit", 100, "most changes listed")
	key := fs.String("key", "", "only changes that set or removed this attribute")
	if _, err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	if *limit < 1 {
		return usageError{errors.New("--limit must be at least 1")}
	}
	out := json.NewEncoder(stdout)
	if f.remote.url != "" {
		// Through the admin API: what its policy lets through.
		cl, err := f.remote.client(ctx, getenv)
		if err != nil {
			return err
		}
		n := 0
		for change, err := range cl.History(ctx, *user, client.HistoryOptions{Key: *key, PageSize: min(*limit, 200)}) {
			if err != nil {
				return err
			}
			if err := out.Encode(change); err != nil {
				return err
			}
			if n++; n == *limit {
				break
			}
		}
		return nil
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, kind, err := cfg.open(ctx, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	h, ok := userattrs.As[userattrs.History](st)
	if !ok {
		return fmt.Errorf("the %s store keeps no history of changes", kind.Name)
	}
	if !st.Capabilities().Durable {
		// A store this command opens afresh holds nothing.
		return fmt.Errorf("the %s store keeps its history in the memory of the process that serves it; "+
			"read it there, through the admin API", kind.Name)
	}
	var before int64
	for left := *limit; left > 0; {
		page := min(left, 500)
		records, err := h.History(ctx, *user, userattrs.HistoryQuery{Before: before, Key: *key, Limit: page})
		if err != nil {
			return err
		}
		for _, r := range records {
			if err := out.Encode(r); err != nil {
				return err
			}
		}
		if len(records) < page {
			return nil
		}
		left -= len(records)
		before = records[len(records)-1].Seq
	}
	return nil
}
