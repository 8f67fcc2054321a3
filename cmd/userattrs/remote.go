package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/userattrs/userattrs/client"
)

// remoteConfig is how the commands that call a running service reach it:
// its URL and where their token comes from.
type remoteConfig struct {
	url, tokenURL, clientID, scope string
}

func (c *remoteConfig) flags(fs *flag.FlagSet) {
	fs.StringVar(&c.url, "url", "", "call the service at this URL (such as https://users.example.com) instead of opening a store")
	fs.StringVar(&c.tokenURL, "token-url", "", "with --client-id: get a service account's token from this OAuth2 token endpoint "+
		"(client credentials, the secret from USERATTRS_CLIENT_SECRET); without them the token is USERATTRS_TOKEN")
	fs.StringVar(&c.clientID, "client-id", "", "the service account's client id, for --token-url")
	fs.StringVar(&c.scope, "scope", "", "space-separated scopes to ask --token-url for (default: the client's own)")
}

// client returns the API client the flags describe. Secrets come from the
// environment only, never from the command line, where other users of the
// machine see them.
func (c *remoteConfig) client(ctx context.Context, getenv func(string) string) (*client.Client, error) {
	var cfg client.Config
	cfg.URL = c.url
	switch {
	case c.tokenURL != "" || c.clientID != "":
		secret := getenv("USERATTRS_CLIENT_SECRET")
		if c.tokenURL == "" || c.clientID == "" || secret == "" {
			return nil, usageError{errors.New("client credentials need --token-url, --client-id and USERATTRS_CLIENT_SECRET")}
		}
		cfg.HTTPClient = client.ClientCredentials(ctx, c.tokenURL, c.clientID, secret, strings.Fields(c.scope)...)
	case getenv("USERATTRS_TOKEN") != "":
		cfg.HTTPClient = client.StaticToken(ctx, getenv("USERATTRS_TOKEN"))
	default:
		return nil, usageError{errors.New("no token: set USERATTRS_TOKEN, or --token-url and --client-id with USERATTRS_CLIENT_SECRET")}
	}
	cl, err := client.New(cfg)
	if err != nil {
		return nil, usageError{err}
	}
	return cl, nil
}

// get prints the attributes of a user as a JSON object of arrays, and
// their entity tag on stderr, for set --if-match.
func get(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs get", flag.ContinueOnError)
	var remote remoteConfig
	remote.flags(fs)
	user := fs.String("user", "", "the user (admin API); without it, the token's own user (self-service)")
	if _, err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	cl, err := remote.requiredClient(ctx, getenv)
	if err != nil {
		return err
	}
	attrs, etag, err := cl.Get(ctx, *user)
	if err != nil {
		return err
	}
	fmt.Fprintln(stderr, "ETag:", etag)
	return json.NewEncoder(stdout).Encode(attrs)
}

// set merges key=value arguments into a user's attributes: a key given
// several times gets several values, and key= removes the attribute.
func set(ctx context.Context, args []string, getenv func(string) string, stdout, _ io.Writer) error {
	fs := flag.NewFlagSet("userattrs set", flag.ContinueOnError)
	var remote remoteConfig
	remote.flags(fs)
	user := fs.String("user", "", "the user (admin API); without it, the token's own user (self-service)")
	ifMatch := fs.String("if-match", "", "merge only if the attributes still have this entity tag (from get): 412 otherwise")
	_, pairs, err := parseFlagsAndArgs(fs, args, getenv, stdout)
	if err != nil {
		return err
	}
	p, err := parsePairs(pairs)
	if err != nil {
		return err
	}
	cl, err := remote.requiredClient(ctx, getenv)
	if err != nil {
		return err
	}
	return cl.Merge(ctx, *user, p, *ifMatch)
}

// parsePairs reads key=value arguments into a patch.
func parsePairs(pairs []string) (client.Patch, error) {
	if len(pairs) == 0 {
		return nil, usageError{errors.New("give at least one key=value (key= removes the attribute), after the flags")}
	}
	p := client.Patch{}
	for _, pair := range pairs {
		key, value, ok := strings.Cut(pair, "=")
		if !ok || key == "" {
			return nil, usageError{fmt.Errorf("%q is not key=value", pair)}
		}
		values, named := p[key]
		switch {
		case value == "" && named, value != "" && named && values == nil:
			return nil, usageError{fmt.Errorf("%s is both set and removed", key)}
		case value == "":
			p[key] = nil
		default:
			p[key] = append(values, value)
		}
	}
	return p, nil
}

// requiredClient is client for the commands that only call a service.
func (c *remoteConfig) requiredClient(ctx context.Context, getenv func(string) string) (*client.Client, error) {
	if c.url == "" {
		return nil, usageError{errors.New("--url is required")}
	}
	return c.client(ctx, getenv)
}
