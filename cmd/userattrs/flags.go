package main

import (
	"flag"
	"fmt"
	"io"
	"runtime/debug"
	"strings"
)

// envName is the environment variable that sets a flag when the command
// line does not: --oidc-issuer is USERATTRS_OIDC_ISSUER.
func envName(flagName string) string {
	return "USERATTRS_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// parseFlags applies the environment to fs, then the command line, and
// returns the names of the flags that either set explicitly.
func parseFlags(fs *flag.FlagSet, args []string, getenv func(string) string, stderr io.Writer) (map[string]bool, error) {
	fs.SetOutput(stderr)
	set := map[string]bool{}
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if v := getenv(envName(f.Name)); v != "" && err == nil {
			if e := fs.Set(f.Name, v); e != nil {
				// The value may be a secret: name the variable, not the value.
				err = fmt.Errorf("invalid value in %s", envName(f.Name))
			}
			set[f.Name] = true
		}
	})
	if err != nil {
		return nil, err
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set, nil
}

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
