// Package store is how stores plug into the program: each store package
// describes itself as a Kind (its --store form, its own flags, how it
// opens, its migrations), and cmd/userattrs keeps one table of kinds. What
// a store can promise once open, it declares itself
// (userattrs.Capabilities).
package store

import (
	"context"
	"errors"
	"flag"
	"hash/fnv"
	"reflect"
	"strconv"
	"strings"
	"time"

	"github.com/userattrs/userattrs"
)

// Kind is one row of the program's table of stores.
type Kind struct {
	// Name is the kind in logs and metrics: safe to log where the --store
	// value (a URL with a password) is not.
	Name string
	// Form is how --store names a store of this kind, for usage texts.
	Form string
	// Match reports whether a --store value names this kind.
	Match func(spec string) bool
	// Flags registers the kind's own flags, if any, and returns the
	// function that opens a store once the flags are parsed.
	Flags func(fs *flag.FlagSet) Opener
	// Migrate applies the kind's schema migrations to the store spec names;
	// nil for kinds that keep no schema of their own.
	Migrate func(ctx context.Context, spec string) error
}

// Opener opens the store spec names.
type Opener func(ctx context.Context, spec string, env Env) (userattrs.Store, error)

// Env is what every store may take from the program's common
// configuration.
type Env struct {
	// Timeout bounds one store operation.
	Timeout time.Duration
	// Events: the store writes each change's event to its outbox, where it
	// has one (Capabilities.Outbox).
	Events bool
	// Warn tells the operator what the store cannot promise as configured.
	Warn func(msg string)
	// AutoMigrate: apply pending schema migrations at open, in the stores
	// that keep a schema; without it they refuse to open while
	// migrations are pending (userattrs migrate applies them).
	AutoMigrate bool
	// HistoryBounds bound each user's history, in the stores that keep one.
	HistoryBounds userattrs.HistoryBounds
	// Staleness bounds how long a store may act on what it read of data
	// others change (--read-cache-ttl): Keycloak's user profile, where the
	// store applies it itself.
	Staleness time.Duration
}

// Prefix returns a Match for --store values that start with prefix.
func Prefix(prefixes ...string) func(string) bool {
	return func(spec string) bool {
		for _, p := range prefixes {
			if strings.HasPrefix(spec, p) {
				return true
			}
		}
		return false
	}
}

// NoFlags is Flags for kinds without flags of their own.
func NoFlags(open Opener) func(*flag.FlagSet) Opener {
	return func(*flag.FlagSet) Opener { return open }
}

// PositiveInt is a flag value that refuses anything below 1, so that a
// nonsensical setting stops the program at start; its zero value means
// "not set".
type PositiveInt int

func (p *PositiveInt) String() string { return strconv.Itoa(int(*p)) }

func (p *PositiveInt) Set(s string) error {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		return errors.New("must be a whole number of at least 1")
	}
	*p = PositiveInt(n)
	return nil
}

// Next runs an updater of Store.Update on current and reports whether the
// attributes it returns differ, so that stores skip writes that change
// nothing: an updater that changes nothing may say so in O(1) by returning
// current itself. A panic in update is returned as a *PanicError.
func Next(current userattrs.Attributes, update func(userattrs.Attributes) (userattrs.Attributes, error)) (next userattrs.Attributes, changed bool, err error) {
	defer userattrs.RecoverPanic(&err)
	next, err = update(current)
	if err != nil {
		return nil, false, err
	}
	return next, !Same(next, current) && !next.Equal(current), nil
}

// Same reports whether a and b are one map, not two equal ones: what a
// store that keeps the attributes it last saw checks them against.
func Same(a, b userattrs.Attributes) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// OutboxPartitions is how many parts a shared outbox is split into by
// user, so that dispatchers on several instances each take some users'
// events and keep each user's in order.
const OutboxPartitions = 16

// OutboxPartition is the part of the outbox user's events go to.
func OutboxPartition(user string) int {
	h := fnv.New32a()
	h.Write([]byte(user))
	return int(h.Sum32() % OutboxPartitions)
}
