package main

import (
	"context"
	"flag"
	"fmt"
	"io"
)

// migrate applies the schema migrations of the store and exits, for
// operators who run them apart from serving (serve --auto-migrate=false).
func migrate(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs migrate", flag.ContinueOnError)
	var c storeConfig
	c.specFlags(fs)
	if _, err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	spec, kind, err := c.kind()
	if err != nil {
		return err
	}
	if kind.Migrate == nil {
		fmt.Fprintf(stdout, "the %s store keeps no schema of its own: nothing to migrate\n", kind.Name)
		return nil
	}
	if err := kind.Migrate(ctx, spec); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s schema is up to date\n", kind.Name)
	return nil
}
