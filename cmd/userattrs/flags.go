package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"
)

// envName is the environment variable that sets a flag when the command
// line does not: --oidc-issuer is USERATTRS_OIDC_ISSUER.
func envName(flagName string) string {
	return "USERATTRS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// errHelpShown: the command printed its help as asked (-h); the program
// exits 0.
var errHelpShown = errors.New("help shown")

// usageError is a command line the program cannot run: it exits 2 after one
// line that says why.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// parseFlags applies the environment to fs, then the command line, and
// returns the names of the flags that either set explicitly. -h prints the
// flags to stdout and returns errHelpShown; a wrong flag is one usageError
// line, not the flag list.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) (map[string]bool, error) {
	set, rest, err := parseFlagsAndArgs(fs, args, getenv, stdout)
	if err == nil && len(rest) > 0 {
		return nil, usageError{fmt.Errorf("unexpected arguments: %s (%s -h lists the flags)", strings.Join(rest, " "), fs.Name())}
	}
	return set, err
}

// parseFlagsAndArgs is parseFlags for commands that take arguments after
// their flags, which it returns.
func parseFlagsAndArgs(fs *flag.FlagSet, args []string, getenv func(string) string, stdout io.Writer) (map[string]bool, []string, error) {
	fs.SetOutput(io.Discard)
	set := map[string]bool{}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				// The value may be a secret: name the variable, not the value.
				err = usageError{fmt.Errorf("invalid value in %s", envName(f.Name))}
			}
			set[f.Name] = true
		}
	})
	if err != nil {
		return nil, nil, err
	}
	if err := fs.Parse(args); errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stdout, "usage: %s [flags]\n\nEvery flag can also be set by the environment variable USERATTRS_<FLAG>\n"+
			"(--oidc-issuer: USERATTRS_OIDC_ISSUER); the command line wins.\n\n", fs.Name())
		fs.SetOutput(stdout)
		fs.PrintDefaults()
		return nil, nil, errHelpShown
	} else if err != nil {
		return nil, nil, usageError{fmt.Errorf("%w (%s -h lists the flags)", err, fs.Name())}
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set, fs.Args(), nil
}

// positiveDuration is a duration flag that refuses zero and less.
type positiveDuration time.Duration

func (d *positiveDuration) String() string { return time.Duration(*d).String() }

func (d *positiveDuration) Set(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil || v <= 0 {
		return errors.New("must be a positive duration such as 2s")
	}
	*d = positiveDuration(v)
	return nil
}

// logLevel is --log-level, shown and parsed in lower case as the README
// writes it.
type logLevel struct{ slog.Level }

func (l *logLevel) String() string     { return strings.ToLower(l.Level.String()) }
func (l *logLevel) Set(s string) error { return l.UnmarshalText([]byte(s)) }

// commaList splits a comma-separated flag value.
func commaList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// buildVersion is set with -ldflags "-X main.buildVersion=..." by releases.
var buildVersion = ""

func version() string {
	if buildVersion != "" {
		return buildVersion
	}
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Version != "" && info.Main.Version != "(devel)" {
		return info.Main.Version
	}
	return "devel"
}
