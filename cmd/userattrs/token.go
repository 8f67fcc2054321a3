package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/userattrs/userattrs/auth"
)

// token prints a development token signed with the key of the data
// directory, which "serve --dev" on the same directory trusts.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs token", flag.ContinueOnError)
	sub := fs.String("sub", "", "the user the token is for (required)")
	scope := fs.String("scope", "user:attributes:read user:attributes:write", "space-separated scopes")
	client := fs.String("client", "userattrs-cli", "the client id (azp) of the token")
	ttl := fs.Duration("ttl", time.Hour, "how long the token is valid")
	dataDir := fs.String("data-dir", "data", "the data directory holding the development key")
	if _, err := parseFlags(fs, args, getenv, stderr); err != nil {
		return err
	}
	if *sub == "" {
		return fmt.Errorf("token: --sub is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("token: --ttl must be positive")
	}
	key, err := auth.LoadOrCreateDevKey(*dataDir)
	if err != nil {
		return err
	}
	tok, err := key.Sign(auth.TokenRequest{Subject: *sub, ClientID: *client, Scopes: strings.Fields(*scope), TTL: *ttl})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}
