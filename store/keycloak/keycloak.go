// Package keycloak keeps attributes where the identity provider keeps them:
// on the Keycloak user, through the Keycloak Admin REST API and a
// service-account client.
package keycloak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
)

// ProfileFields are Keycloak profile fields, not attributes of this API:
// never returned, never written here. The service hides them by policy;
// the store also leaves them out of what it reads.
var ProfileFields = []string{"username", "email", "firstName", "lastName"}

// FederationAttributes are attributes Keycloak's own user federation keeps
// on users; the service hides them by default.
var FederationAttributes = []string{"LDAP_ID", "LDAP_ENTRY_DN", "KERBEROS_PRINCIPAL", "createTimestamp", "modifyTimestamp"}

// Kind is the Keycloak store's row in the program's table of stores.
func Kind() store.Kind {
	return store.Kind{
		Name:  "keycloak",
		Form:  "keycloak",
		Match: func(spec string) bool { return spec == "keycloak" },
		Flags: func(fs *flag.FlagSet) store.Opener {
			var cfg Config
			fs.StringVar(&cfg.URL, "keycloak-url", "", "base URL of Keycloak, with --store keycloak")
			fs.StringVar(&cfg.Realm, "keycloak-realm", "", "the realm of the users, with --store keycloak")
			fs.StringVar(&cfg.ClientID, "keycloak-client-id", "", "client whose service account reads and writes users")
			fs.StringVar(&cfg.ClientSecret, "keycloak-client-secret", "", "its secret (prefer USERATTRS_KEYCLOAK_CLIENT_SECRET)")
			return func(_ context.Context, _ string, env store.Env) (userattrs.Store, error) {
				c := cfg
				c.Timeout = env.Timeout
				return Open(c)
			}
		},
	}
}

// Config configures the Keycloak store.
type Config struct {
	URL          string // e.g. https://sso.example.com
	Realm        string
	ClientID     string // a confidential client with a service account
	ClientSecret string // with realm-management view-users, manage-users, view-realm
	// Timeout bounds every request to Keycloak (default 5s).
	Timeout time.Duration
}

// Store reads and writes the attributes of Keycloak users.
type Store struct {
	admin  string // base URL of the realm's Admin API
	client *http.Client
	creds  clientcredentials.Config
	tokens atomic.Pointer[oauth2.TokenSource]
	locks  userLocks
	closed atomic.Bool
}

var _ userattrs.Store = (*Store)(nil)

// maxConflictRetries bounds how often a merge re-reads and writes again when
// Keycloak reports a conflicting concurrent update.
const maxConflictRetries = 3

// maxResponseBytes bounds what the store reads of one Keycloak response.
const maxResponseBytes = 4 << 20

// Open returns a store for cfg. It does not contact Keycloak: the service
// may start before Keycloak does, and readiness tells when it can serve.
func Open(cfg Config) (*Store, error) {
	if cfg.URL == "" || cfg.Realm == "" || cfg.ClientID == "" || cfg.ClientSecret == "" {
		return nil, errors.New("keycloak: the URL, realm, client id and client secret are all required")
	}
	base, err := url.Parse(strings.TrimSuffix(cfg.URL, "/"))
	if err != nil || (base.Scheme != "http" && base.Scheme != "https") || base.Host == "" {
		return nil, errors.New("keycloak: the URL must be an http(s) URL")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	realm := url.PathEscape(cfg.Realm)
	s := &Store{
		admin:  base.String() + "/admin/realms/" + realm,
		client: &http.Client{Timeout: cfg.Timeout},
		creds: clientcredentials.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			TokenURL:     base.String() + "/realms/" + realm + "/protocol/openid-connect/token",
			AuthStyle:    oauth2.AuthStyleInHeader,
		},
	}
	s.renewTokens(nil)
	return s, nil
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

// call sends one Admin API request and returns the status and body. A
// token Keycloak no longer accepts is renewed once. Failures to reach
// Keycloak, and its 5xx answers, are ErrUnavailable.
func (s *Store) call(ctx context.Context, method, path string, body []byte) (int, []byte, error) {
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
		req, err := http.NewRequestWithContext(ctx, method, s.admin+path, reader)
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

// pathKind names an Admin API path for errors and logs without the user id.
func pathKind(path string) string {
	if strings.HasPrefix(path, "/users/") {
		if i := strings.Index(path[len("/users/"):], "/"); i >= 0 {
			return "/users/{id}" + path[len("/users/")+i:]
		}
		return "/users/{id}"
	}
	return path
}

func userPath(user string) string { return "/users/" + url.PathEscape(user) }

// getJSON reads an Admin API resource into v. A missing user is
// ErrUserNotFound.
func (s *Store) getJSON(ctx context.Context, path string, v any) error {
	status, body, err := s.call(ctx, http.MethodGet, path, nil)
	if err != nil {
		return err
	}
	switch {
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

// getUser returns the full representation of user, every field as Keycloak
// sent it, so that a write sends back what it did not mean to change.
func (s *Store) getUser(ctx context.Context, user string) (map[string]json.RawMessage, error) {
	var rep map[string]json.RawMessage
	if err := s.getJSON(ctx, userPath(user), &rep); err != nil {
		return nil, err
	}
	return rep, nil
}

// attributesOf returns the attributes of a user representation, without
// profile fields, and the profile fields Keycloak listed among them.
func attributesOf(rep map[string]json.RawMessage) (attrs, profile userattrs.Attributes, err error) {
	all := userattrs.Attributes{}
	if raw, ok := rep["attributes"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &all); err != nil {
			return nil, nil, fmt.Errorf("keycloak: decode attributes: %w", err)
		}
	}
	profile = userattrs.Attributes{}
	for _, f := range ProfileFields {
		if v, ok := all[f]; ok {
			profile[f] = v
			delete(all, f)
		}
	}
	for k, v := range all {
		if len(v) == 0 {
			delete(all, k)
		}
	}
	return all, profile, nil
}

// Capabilities: Keycloak knows its users and keeps no empty values, and
// its own consoles change attributes behind the service's back. Merges take
// turns per user within one store value only, so it does not claim several
// instances.
func (s *Store) Capabilities() userattrs.Capabilities {
	return userattrs.Capabilities{
		ExternalWriters: true, Durable: true, KnownUsers: true, NoEmptyValues: true,
		OwnedAttributes: append(slices.Clone(ProfileFields), FederationAttributes...),
	}
}

// Get returns the attributes of the Keycloak user.
func (s *Store) Get(ctx context.Context, user string) (userattrs.Attributes, error) {
	if s.closed.Load() {
		return nil, userattrs.ErrClosed
	}
	rep, err := s.getUser(ctx, user)
	if err != nil {
		return nil, err
	}
	attrs, _, err := attributesOf(rep)
	return attrs, err
}

// Update reads the user, applies update, writes the whole representation
// back (Keycloak has no PATCH: a PUT that carries attributes deletes the
// ones it omits) and reads the user again to confirm Keycloak kept what was
// written. Merges of one user through this store take turns; a conflict
// reported by Keycloak (another writer) makes it read and apply again.
func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	if s.closed.Load() {
		return userattrs.ErrClosed
	}
	unlock, err := s.locks.lock(ctx, user)
	if err != nil {
		return unavailable("wait for the user's earlier merge", err)
	}
	defer unlock()
	for attempt := 0; ; attempt++ {
		rep, err := s.getUser(ctx, user)
		if err != nil {
			return err
		}
		current, profile, err := attributesOf(rep)
		if err != nil {
			return err
		}
		next, changed, err := userattrs.Next(current, update)
		if err != nil || !changed {
			return err
		}
		if err := keepable(current, next); err != nil {
			return err
		}
		written := next.Clone()
		for k, v := range profile {
			written[k] = v
		}
		if rep["attributes"], err = json.Marshal(written); err != nil {
			return err
		}
		body, err := json.Marshal(rep)
		if err != nil {
			return err
		}
		status, _, err := s.call(ctx, http.MethodPut, userPath(user), body)
		if err != nil {
			return err
		}
		switch {
		case status == http.StatusConflict && attempt < maxConflictRetries:
			continue
		case status == http.StatusNotFound:
			return userattrs.ErrUserNotFound
		case status != http.StatusNoContent && status != http.StatusOK:
			return fmt.Errorf("keycloak: PUT /users/{id}: unexpected status %d", status)
		}
		return s.confirm(ctx, user, next)
	}
}

// confirm checks that Keycloak kept the attributes just written: a realm
// whose user profile discards unmanaged attributes answers 204 and drops
// them, and the client must hear of it.
func (s *Store) confirm(ctx context.Context, user string, want userattrs.Attributes) error {
	rep, err := s.getUser(ctx, user)
	if err != nil {
		return err
	}
	got, _, err := attributesOf(rep)
	if err != nil {
		return err
	}
	if !got.Equal(want) {
		return errors.New("keycloak: the realm did not keep the attributes written: its user profile must allow unmanaged attributes (unmanagedAttributePolicy ENABLED or ADMIN_EDIT)")
	}
	return nil
}

// keepable rejects values Keycloak cannot keep, before anything is written:
// Keycloak silently drops an empty value.
func keepable(current, next userattrs.Attributes) error {
	var violations []userattrs.Violation
	for _, k := range next.Keys() {
		if slices.Equal(next[k], current[k]) {
			continue
		}
		for i, v := range next[k] {
			if v == "" {
				index := i
				if len(next[k]) == 1 {
					index = -1
				}
				violations = append(violations, userattrs.Violation{
					Key: k, Index: index,
					Detail: "Keycloak cannot keep an empty value; remove the attribute with null instead",
				})
				break
			}
		}
	}
	if violations != nil {
		return &userattrs.InvalidError{Violations: violations}
	}
	return nil
}

// Ping checks that Keycloak answers and that the realm keeps the attributes
// this service writes.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return userattrs.ErrClosed
	}
	var profile struct {
		UnmanagedAttributePolicy string `json:"unmanagedAttributePolicy"`
	}
	if err := s.getJSON(ctx, "/users/profile", &profile); err != nil {
		return err
	}
	switch profile.UnmanagedAttributePolicy {
	case "ENABLED", "ADMIN_EDIT":
		return nil
	}
	return fmt.Errorf("keycloak: the realm's user profile discards unmanaged attributes (unmanagedAttributePolicy %q): set it to ENABLED",
		profile.UnmanagedAttributePolicy)
}

// LinkedProviders returns the aliases of the identity providers the user
// has a linked (federated) identity at.
func (s *Store) LinkedProviders(ctx context.Context, user string) ([]string, error) {
	var links []struct {
		IdentityProvider string `json:"identityProvider"`
	}
	if err := s.getJSON(ctx, userPath(user)+"/federated-identity", &links); err != nil {
		return nil, err
	}
	providers := make([]string, len(links))
	for i, l := range links {
		providers[i] = l.IdentityProvider
	}
	return providers, nil
}

// Close makes every later call ErrClosed; the store holds no connections
// of its own.
func (s *Store) Close() error {
	s.closed.Store(true)
	return nil
}

// userLocks serialises the merges of each user; entries live only while a
// merge of that user runs or waits. Waiting ends with the waiter's context,
// so that waiters do not pile up behind a slow holder.
type userLocks struct {
	mu    sync.Mutex
	users map[string]*userLock
}

type userLock struct {
	held    chan struct{} // holds a token while the lock is held
	waiters int
}

func (l *userLocks) lock(ctx context.Context, user string) (unlock func(), err error) {
	l.mu.Lock()
	if l.users == nil {
		l.users = map[string]*userLock{}
	}
	ul, ok := l.users[user]
	if !ok {
		ul = &userLock{held: make(chan struct{}, 1)}
		l.users[user] = ul
	}
	ul.waiters++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		ul.waiters--
		if ul.waiters == 0 {
			delete(l.users, user)
		}
		l.mu.Unlock()
	}
	select {
	case ul.held <- struct{}{}:
		return func() {
			<-ul.held
			release()
		}, nil
	case <-ctx.Done():
		release()
		return nil, ctx.Err()
	}
}
