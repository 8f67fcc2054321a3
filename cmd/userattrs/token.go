package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"path/filepath"
	"strings"
	"time"

	"github.com/userattrs/userattrs/auth"
)

// token prints a development token signed with the key of the data
// directory, which "serve --dev" on the same directory trusts.
func token(args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("userattrs token", flag.ContinueOnError)
	sub := flags.String("sub", "", "the user the token is for (required)")
	scope := flags.String("scope", "user:attributes:read user:attributes:write", "space-separated scopes")
	client := flags.String("client", "userattrs-cli", "the client id (azp) of the token")
	ttl := flags.Duration("ttl", time.Hour, "how long the token is valid")
	dataDir := flags.String("data-dir", "data", "the data directory holding the development key")
	if _, err := parseFlags(flags, args, getenv, stdout); err != nil {
		return err
	}
	if *sub == "" {
		return fmt.Errorf("token: --sub is required")
	}
	if *ttl <= 0 {
		return fmt.Errorf("token: --ttl must be positive")
	}
	// The key is the one `serve --dev` made: a new key here would sign
	// tokens that the server refuses.
	key, err := auth.LoadDevKey(*dataDir)
	if errors.Is(err, fs.ErrNotExist) {
		path, _ := filepath.Abs(filepath.Join(*dataDir, auth.DevKeyFile))
		return fmt.Errorf("token: there is no development key at %s: start `userattrs serve --dev` first, "+
			"and give token the --data-dir the server uses (run from the same directory, or pass --data-dir)", path)
	}
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
