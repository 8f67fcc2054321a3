package keycloak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"

	"golang.org/x/oauth2"

	"github.com/userattrs/userattrs"
)

// transport keeps as many connections to Keycloak open as requests run at
// once: Go's default keeps two idle per host, so that under load most
// requests would open a new connection, which Keycloak pays for.
func transport() *http.Transport {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 256
	t.MaxIdleConnsPerHost = 256
	return t
}

// renewTokens replaces the token source unless another caller already
// replaced the one that failed: after Keycloak lost its sessions (a
// restart), every request would otherwise fetch a token of its own.
func (s *Store) renewTokens(failed *oauth2.TokenSource) {
	ctx := context.WithValue(context.Background(), oauth2.HTTPClient, s.client)
	// ReuseTokenSource caches the token, refreshes it shortly before it
	// expires, and lets one caller at a time refresh it.
	ts := oauth2.ReuseTokenSource(nil, s.creds.TokenSource(ctx))
	if failed == nil {
		s.tokens.Store(&ts)
		return
	}
	s.tokens.CompareAndSwap(failed, &ts)
}

// call sends one request to Keycloak, at base (the Admin API or the
// extension) and path, and returns the status and body. A token Keycloak no
// longer accepts is renewed once. Failures to reach Keycloak, and its 5xx
// answers, are ErrUnavailable.
func (s *Store) call(ctx context.Context, method, base, path string, body []byte) (int, []byte, error) {
	for attempt := 0; ; attempt++ {
		ts := s.tokens.Load()
		tok, err := (*ts).Token()
		if err != nil {
			return 0, nil, unavailable("get an admin token", err)
		}
		var reader io.Reader
		if body != nil {
			reader = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, base+path, reader)
		if err != nil {
			return 0, nil, err
		}
		req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		resp, err := s.client.Do(req)
		if err != nil {
			return 0, nil, unavailable(method+" "+pathKind(path), err)
		}
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		resp.Body.Close()
		if err != nil {
			return 0, nil, unavailable("read the answer to "+method+" "+pathKind(path), err)
		}
		switch {
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			s.renewTokens(ts)
			continue
		case resp.StatusCode >= 500:
			return resp.StatusCode, nil, unavailable(method+" "+pathKind(path), fmt.Errorf("keycloak answered %d", resp.StatusCode))
		case resp.StatusCode == http.StatusForbidden && base == s.extension && bytes.Contains(data, []byte(`"readOnly"`)):
			// Not the service account's rights: the realm's user profile
			// does not let the caller edit what it names (writeExtension).
		case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
			return resp.StatusCode, nil, fmt.Errorf("keycloak: %s %s: %d: check the service account's client credentials and its realm-management roles",
				method, pathKind(path), resp.StatusCode)
		}
		return resp.StatusCode, data, nil
	}
}

func unavailable(what string, err error) error {
	return fmt.Errorf("%w: keycloak: %s: %w", userattrs.ErrUnavailable, what, err)
}

// pathKind names a path for errors and logs without the user id.
func pathKind(path string) string {
	if strings.HasPrefix(path, "/users/") {
		if i := strings.Index(path[len("/users/"):], "/"); i >= 0 {
			return "/users/{id}" + path[len("/users/")+i:]
		}
		return "/users/{id}"
	}
	return path
}

// userID is the shape of Keycloak's user ids. A token subject of any other
// shape names no Keycloak user, and must never become part of a path:
// "profile" or "count" would reach other Admin API resources.
var userID = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// userPath is the path of a user's resource, or ErrUserNotFound for an id
// that is no Keycloak user id.
func userPath(user string) (string, error) {
	if !userID.MatchString(user) {
		return "", userattrs.ErrUserNotFound
	}
	return "/users/" + user, nil
}

// errNoExtension: Keycloak answers, but without the userattrs extension.
var errNoExtension = errors.New("keycloak: the userattrs extension is not installed in this Keycloak: " +
	"install keycloak-extension (see the README), or run with --keycloak-admin-api-only, with which merges through several instances are not atomic")

// extensionProtocol is the protocol of the extension this store speaks:
// the one that reads and writes with the rights of the caller it names,
// and erases.
const extensionProtocol = "3"

// errOldExtension: the extension answers, but in an older protocol, which
// would act with an administrator's rights for every caller.
var errOldExtension = errors.New("keycloak: the userattrs extension installed in this Keycloak is older than this service " +
	"(it does not read and write with the rights of the caller it serves, or cannot erase): install the extension built from this release")

// getJSON reads a resource of Keycloak into v. A missing user is
// ErrUserNotFound.
func (s *Store) getJSON(ctx context.Context, base, path string, v any) error {
	status, body, err := s.call(ctx, http.MethodGet, base, path, nil)
	if err != nil {
		return err
	}
	switch {
	case status == http.StatusNotFound && base == s.extension && !bytes.Contains(body, []byte("user-not-found")):
		return errNoExtension
	case status == http.StatusNotFound && strings.HasPrefix(path, "/users/"):
		return userattrs.ErrUserNotFound
	case status != http.StatusOK:
		return fmt.Errorf("keycloak: GET %s: unexpected status %d", pathKind(path), status)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("keycloak: decode the answer to GET %s: %w", pathKind(path), err)
	}
	return nil
}

// putUser PUTs v as JSON to user's resource under base (the Admin API or
// the extension), with query, and returns the answer as it is.
func (s *Store) putUser(ctx context.Context, base, user, query string, v any) (int, []byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return 0, nil, err
	}
	path, _ := userPath(user)
	return s.call(ctx, http.MethodPut, base, path+query, body)
}
