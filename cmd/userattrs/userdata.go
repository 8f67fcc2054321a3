package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/rs/xid"

	"github.com/userattrs/userattrs"
)

// userDataFlags are the flags of the commands that act on one user's data,
// through a running service (--url) or on the store itself.
type userDataFlags struct {
	store  storeConfig
	remote remoteConfig
	user   *string
}

func newUserDataFlags(fs *flag.FlagSet, what string) *userDataFlags {
	f := &userDataFlags{}
	f.store.flags(fs)
	f.remote.flags(fs)
	f.user = fs.String("user", "", what+" (required)")
	return f
}

func (f *userDataFlags) check() error {
	if *f.user == "" {
		return usageError{errors.New("--user is required")}
	}
	if f.remote.url != "" && f.store.spec != "" {
		return usageError{errors.New("give --url to call a running service, or --store to open the store, not both")}
	}
	return nil
}

// openService opens the store for a command that runs without a server,
// with the service around it; a store kept in memory holds nothing here.
func (c *storeConfig) openService(ctx context.Context, stderr io.Writer, policy userattrs.PolicyConfig) (*userattrs.Service, func() error, error) {
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, kind, err := c.open(ctx, logger)
	if err != nil {
		return nil, nil, err
	}
	if !st.Capabilities().Durable {
		st.Close()
		return nil, nil, fmt.Errorf("the %s store keeps its data in the memory of the process that serves it; use --url", kind.Name)
	}
	policy.Hidden = append(policy.Hidden, st.Capabilities().OwnedAttributes...)
	p, err := userattrs.NewPolicy(policy)
	if err != nil {
		st.Close()
		return nil, nil, usageError{err}
	}
	return userattrs.NewService(st, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits, Policy: p, StoreTimeout: c.timeout}), st.Close, nil
}

// export prints everything kept of a user as one JSON document.
func export(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs export", flag.ContinueOnError)
	f := newUserDataFlags(fs, "the user whose data is exported")
	hidden := fs.String("hidden-attributes", "", "with --store: the patterns serve hides (its --hidden-attributes), to mark those attributes hidden")
	if _, err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	out := json.NewEncoder(stdout)
	out.SetIndent("", "  ")
	if f.remote.url != "" {
		cl, err := f.remote.client(ctx, getenv)
		if err != nil {
			return err
		}
		x, err := cl.Export(ctx, *f.user)
		if err != nil {
			return err
		}
		return out.Encode(x)
	}
	svc, closeStore, err := f.store.openService(ctx, stderr, userattrs.PolicyConfig{Hidden: commaList(*hidden)})
	if err != nil {
		return err
	}
	defer closeStore()
	x, err := svc.Export(ctx, *f.user)
	if err != nil {
		return err
	}
	return out.Encode(x)
}

// erase erases everything kept of a user.
func erase(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs erase", flag.ContinueOnError)
	f := newUserDataFlags(fs, "the user to erase")
	fs.BoolVar(&f.store.events, "events", false, "with --store: queue the erasure's change event, for the instances' dispatchers to send "+
		"(give it when serve runs with change events on)")
	if _, err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if err := f.check(); err != nil {
		return err
	}
	if f.remote.url != "" {
		cl, err := f.remote.client(ctx, getenv)
		if err != nil {
			return err
		}
		return cl.Erase(ctx, *f.user)
	}
	svc, closeStore, err := f.store.openService(ctx, stderr, userattrs.PolicyConfig{})
	if err != nil {
		return err
	}
	defer closeStore()
	return svc.Erase(userattrs.WithOrigin(ctx, commandOrigin("userattrs-cli")), *f.user)
}

// commandOrigin is who the records of what a command does on the store
// itself name: the command, as no token says who runs it, with a request
// id of its own for the record to quote.
func commandOrigin(command string) userattrs.Origin {
	return userattrs.Origin{Actor: command, ServiceAccount: true, ClientID: command, RequestID: xid.New().String()}
}
