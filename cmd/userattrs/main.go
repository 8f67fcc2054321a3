// Command userattrs serves the attributes endpoints of the user API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

func main() {
	tuneGC(os.Getenv)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	var usage usageError
	switch {
	case errors.As(err, &usage):
		fmt.Fprintln(os.Stderr, "userattrs:", err)
		os.Exit(2)
	case err != nil:
		fmt.Fprintln(os.Stderr, "userattrs:", err)
		os.Exit(1)
	}
}

// tuneGC trades memory for latency where the operator did not choose: a
// request allocates a few KiB and lives a millisecond, so the live heap is
// small and the default GOGC=100 collects many times a second, which shows
// in the latency tail. GOGC=400 collects a quarter as often; the soft
// memory limit makes the collector work harder before the heap nears it.
// With the caches at their default bounds (about 40 MiB live with a
// million users), 64 MiB of Go memory, SQLite's page caches and the
// program's own code keep an instance under 100 MiB resident. The caches
// must stay well under the limit, or a full heap is collected
// continuously: a token cache of 50,000 (51 MiB live in all) halved a
// million-user instance's speed.
// GOGC and GOMEMLIMIT in the environment win.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") == "" {
		debug.SetGCPercent(400)
	}
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(64 << 20)
	}
}

const usage = `usage: userattrs <command> [flags]

commands:
  serve     serve the API (userattrs serve --dev to try it locally)
  token     print a development token that "serve --dev" accepts
  migrate   apply the store's schema migrations and exit
  get       print a user's attributes (userattrs get --url URL [--user ID])
  set       merge key=value pairs into a user's attributes (userattrs set --url URL [--user ID] [--if-match ETAG] k=v k=)
  history   print a user's changes, newest first (userattrs history --store ...|--url URL --user ID)
  export    print everything kept of a user (userattrs export --store ...|--url URL --user ID)
  erase     erase everything kept of a user (userattrs erase --store ...|--url URL --user ID)
  reconcile list (--apply: erase) the store's users Keycloak no longer knows (userattrs reconcile --store ... --keycloak-url ...)
  version   print the version
  healthcheck  exit 0 when the instance at --addr is ready (for images without a shell)
`

// run is the whole program: main only adds the process around it, so tests
// can run it as it runs in production.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	err := command(ctx, args, getenv, stdout, stderr)
	if errors.Is(err, errHelpShown) {
		return nil
	}
	return err
}

func command(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return usageError{errors.New("no command")}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], getenv, stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], getenv, stdout, stderr)
	case "history":
		return history(ctx, args[1:], getenv, stdout, stderr)
	case "get":
		return get(ctx, args[1:], getenv, stdout, stderr)
	case "set":
		return set(ctx, args[1:], getenv, stdout, stderr)
	case "export":
		return export(ctx, args[1:], getenv, stdout, stderr)
	case "erase":
		return erase(ctx, args[1:], getenv, stdout, stderr)
	case "reconcile":
		return reconcile(ctx, args[1:], getenv, stdout, stderr)
	case "token":
		return token(args[1:], getenv, stdout, stderr)
	case "healthcheck":
		return healthcheck(ctx, args[1:], getenv, stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "userattrs", version())
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return usageError{fmt.Errorf("unknown command %q", args[0])}
}
