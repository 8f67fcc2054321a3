package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
	"github.com/userattrs/userattrs/store/keycloak"
	"github.com/userattrs/userattrs/store/memory"
	"github.com/userattrs/userattrs/store/postgres"
	"github.com/userattrs/userattrs/store/sqlite"
)

// stores is the table of the stores the program knows: adding a store is
// one package and one row here.
var stores = []store.Kind{sqlite.Kind(), postgres.Kind(), keycloak.Kind(), memory.Kind()}

// storeConfig names the store and how to reach it; serve and migrate share
// it.
type storeConfig struct {
	spec              string
	dataDir           string
	timeout           time.Duration
	readCache         bool
	readCacheTTL      positiveDuration
	readCacheMaxBytes int
	historyBounds     userattrs.HistoryBounds
	openers           map[string]store.Opener // by kind, once the flags are parsed
	events            bool                    // write change events to the outbox
	autoMigrate       bool
}

// specFlags registers what names the store, which both serve and migrate
// need.
func (c *storeConfig) specFlags(fs *flag.FlagSet) {
	var forms []string
	for _, k := range stores {
		forms = append(forms, k.Form)
	}
	fs.StringVar(&c.spec, "store", "", "where attributes are kept: "+strings.Join(forms, ", ")+
		" (default: sqlite: on userattrs.db in --data-dir)")
	fs.StringVar(&c.dataDir, "data-dir", "data", "directory of the default SQLite database and of the development key")
}

// flags registers everything serve needs of a store: what names it, the
// common bounds, and every kind's own flags.
func (c *storeConfig) flags(fs *flag.FlagSet) {
	c.specFlags(fs)
	fs.DurationVar(&c.timeout, "store-timeout", 5*time.Second, "bound on one store operation; slower is 503")
	fs.BoolVar(&c.readCache, "read-cache", true, "keep recently read and written users in memory, where the store allows it")
	fs.IntVar(&c.readCacheMaxBytes, "read-cache-max-bytes", userattrs.DefaultReadCacheBytes, "most bytes of attribute names and values the read cache keeps, over all users")
	c.readCacheTTL = positiveDuration(2 * time.Second)
	fs.Var(&c.readCacheTTL, "read-cache-ttl", "with a store that others write too (Keycloak), how long a cached user is served (changes made elsewhere show after at most this), "+
		"and how soon a change of the realm's user profile applies with --keycloak-admin-api-only")
	c.historyBounds = userattrs.DefaultHistoryBounds
	fs.Func("history-max-records", fmt.Sprintf("most records one user's history keeps; a change past it drops the user's oldest "+
		"(default %d; 0: no bound)", c.historyBounds.MaxRecords), func(s string) error {
		n, err := strconv.Atoi(s)
		c.historyBounds.MaxRecords = n
		return wholeNumber(n, err)
	})
	fs.Func("history-max-bytes", fmt.Sprintf("most bytes of records one user's history keeps; a change past it drops the user's oldest "+
		"(default %d; 0: no bound)", c.historyBounds.MaxBytes), func(s string) error {
		n, err := strconv.ParseInt(s, 10, 64)
		c.historyBounds.MaxBytes = n
		return wholeNumber(n, err)
	})
	fs.Func("history", "on: keep a bounded history of every change (the default); off: keep none, "+
		"so that a change leaves no record beyond its event (with --events)", func(s string) error {
		switch s {
		case "on", "off":
			c.historyBounds.Off = s == "off"
			return nil
		}
		return errors.New("on or off")
	})
	fs.BoolVar(&c.autoMigrate, "auto-migrate", true,
		"apply pending schema migrations at start, in stores that several instances share (else: userattrs migrate); "+
			"the SQLite store, one process's own file, always does")
	c.openers = map[string]store.Opener{}
	for _, k := range stores {
		c.openers[k.Name] = k.Flags(fs)
	}
}

// wholeNumber refuses what did not parse as a whole number, or is below 0.
func wholeNumber[T int | int64](n T, err error) error {
	if err != nil || n < 0 {
		return errors.New("must be a whole number, 0 or more")
	}
	return nil
}

// kind returns the store spec names (the default SQLite file when empty)
// and its row of the table.
func (c *storeConfig) kind() (string, store.Kind, error) {
	spec := c.spec
	if spec == "" {
		spec = "sqlite:" + filepath.Join(c.dataDir, "userattrs.db")
	}
	for _, k := range stores {
		if k.Match(spec) {
			return spec, k, nil
		}
	}
	var forms []string
	for _, k := range stores {
		forms = append(forms, k.Form)
	}
	return "", store.Kind{}, errors.New("unknown --store: use one of " + strings.Join(forms, ", "))
}

// diskDir is the directory of the file the store keeps its data in, for
// the disk metrics: the SQLite file's; none for the stores that keep their
// data elsewhere.
func (c *storeConfig) diskDir() string {
	spec, kind, err := c.kind()
	if err != nil || kind.Name != "sqlite" {
		return ""
	}
	return filepath.Dir(strings.TrimPrefix(spec, "sqlite:"))
}

// open opens the store the config names.
func (c *storeConfig) open(ctx context.Context, logger *slog.Logger) (userattrs.Store, store.Kind, error) {
	spec, kind, err := c.kind()
	if err != nil {
		return nil, kind, err
	}
	s, err := c.openers[kind.Name](ctx, spec, store.Env{Timeout: c.timeout, Events: c.events, Warn: func(msg string) { logger.Warn(msg) },
		Staleness: time.Duration(c.readCacheTTL), HistoryBounds: c.historyBounds, AutoMigrate: c.autoMigrate})
	return s, kind, err
}
