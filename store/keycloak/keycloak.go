// Package keycloak keeps attributes where the identity provider keeps them:
// on the Keycloak user, with a service-account client. Merges go through
// the userattrs extension of Keycloak (keycloak-extension/), which writes
// changes only while the version read still holds, under a row lock: atomic
// across every instance. Without the extension, and only when the operator
// says so, merges go through the Admin REST API, atomic within one instance
// only.
package keycloak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
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

// UserFields are the names of the other fields of a Keycloak user. Keycloak
// keeps an attribute of such a name as a plain attribute, which changes
// nothing of the field, but confuses whoever reads the user; the service
// hides them by default.
var UserFields = []string{"emailVerified", "enabled", "createdTimestamp", "totp", "federationLink", "requiredActions"}

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
			fs.BoolVar(&cfg.AdminAPIOnly, "keycloak-admin-api-only", false,
				"merge through Keycloak's Admin API, without the userattrs extension: merges through several instances are then NOT atomic")
			return func(_ context.Context, _ string, env store.Env) (userattrs.Store, error) {
				c := cfg
				c.Timeout = env.Timeout
				c.ProfileTTL = env.Staleness
				if c.AdminAPIOnly {
					env.Warn("keycloak: merging through the Admin API without the userattrs extension (--keycloak-admin-api-only): " +
						"merges of one user through different instances can lose each other's changes; run one instance, or install the extension")
				}
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
	// AdminAPIOnly merges through the Admin API instead of the userattrs
	// extension: atomic within this store value only. The store then
	// applies the realm's user profile itself, read again after
	// ProfileTTL (default 2s).
	AdminAPIOnly bool
	ProfileTTL   time.Duration
}

// Store reads and writes the attributes of Keycloak users.
type Store struct {
	admin     string // base URL of the realm's Admin API
	extension string // base URL of the userattrs extension in the realm
	adminOnly bool
	client    *http.Client
	creds     clientcredentials.Config
	tokens    atomic.Pointer[oauth2.TokenSource]
	locks     userLocks
	hints     hints
	profiles  profileCache // the Admin-API-only mode's
	closed    atomic.Bool
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
	if cfg.ProfileTTL <= 0 {
		cfg.ProfileTTL = 2 * time.Second
	}
	realm := url.PathEscape(cfg.Realm)
	s := &Store{
		admin:     base.String() + "/admin/realms/" + realm,
		extension: base.String() + "/realms/" + realm + "/userattrs",
		adminOnly: cfg.AdminAPIOnly,
		client:    &http.Client{Timeout: cfg.Timeout, Transport: transport()},
		creds: clientcredentials.Config{
			ClientID:     cfg.ClientID,
			ClientSecret: cfg.ClientSecret,
			TokenURL:     base.String() + "/realms/" + realm + "/protocol/openid-connect/token",
			AuthStyle:    oauth2.AuthStyleInHeader,
		},
		profiles: profileCache{ttl: cfg.ProfileTTL},
	}
	s.renewTokens(nil)
	return s, nil
}

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
// the one that reads and writes with the rights of the caller it names.
const extensionProtocol = "2"

// errOldExtension: the extension answers, but in an older protocol, which
// would act with an administrator's rights for every caller.
var errOldExtension = errors.New("keycloak: the userattrs extension installed in this Keycloak is older than this service " +
	"(it does not read and write with the rights of the caller it serves): install the extension built from this release")

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

// callerQuery names the caller of ctx to the extension, which reads and
// writes with that caller's rights.
func callerQuery(ctx context.Context) string {
	return "?caller=" + role(userattrs.CallerOf(ctx))
}

// versioned is a user's attributes as the extension reads them: those the
// caller may view, and the version of all of them.
type versioned struct {
	Version    string               `json:"version"`
	Attributes userattrs.Attributes `json:"attributes"`
	Caller     string               `json:"caller"`
}

// read returns the attributes of user that the caller of ctx may view,
// without profile fields, with the version the extension gives them (none
// on the Admin API), and with the user's whole representation on the
// Admin API, which a write sends back.
func (s *Store) read(ctx context.Context, user string) (attrs userattrs.Attributes, version string, rep map[string]json.RawMessage, err error) {
	path, err := userPath(user)
	if err != nil {
		return nil, "", nil, err
	}
	if s.adminOnly {
		p, err := s.profile(ctx)
		if err != nil {
			return nil, "", nil, err
		}
		all, rep, err := s.readAdminAPI(ctx, path)
		if err != nil {
			return nil, "", nil, err
		}
		return p.visible(withoutProfile(all), userattrs.CallerOf(ctx)), "", rep, nil
	}
	var v versioned
	query := callerQuery(ctx)
	if err := s.getJSON(ctx, s.extension, path+query, &v); err != nil {
		return nil, "", nil, err
	}
	if "?caller="+v.Caller != query {
		return nil, "", nil, errOldExtension
	}
	return withoutProfile(v.Attributes), v.Version, nil, nil
}

// readAdminAPI returns the user's representation from the Admin API, and
// every attribute in it.
func (s *Store) readAdminAPI(ctx context.Context, path string) (userattrs.Attributes, map[string]json.RawMessage, error) {
	var rep map[string]json.RawMessage
	if err := s.getJSON(ctx, s.admin, path, &rep); err != nil {
		return nil, nil, err
	}
	var all userattrs.Attributes
	if raw, ok := rep["attributes"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &all); err != nil {
			return nil, nil, fmt.Errorf("keycloak: decode attributes: %w", err)
		}
	}
	return all, rep, nil
}

// withoutProfile returns the attributes of all that are no profile fields
// and have values.
func withoutProfile(all userattrs.Attributes) userattrs.Attributes {
	attrs := userattrs.Attributes{}
	for k, v := range all {
		if len(v) > 0 && !slices.Contains(ProfileFields, k) {
			attrs[k] = v
		}
	}
	return attrs
}

// Capabilities: Keycloak knows its users and keeps no empty values, and
// its own consoles change attributes behind the service's back. Through the
// extension, merges are atomic across every instance; through the Admin
// API, only within this store value. The realm's user profile gives users
// and administrators different rights.
func (s *Store) Capabilities() userattrs.Capabilities {
	return userattrs.Capabilities{
		SharedAcrossInstances: !s.adminOnly,
		ExternalWriters:       true, Durable: true, KnownUsers: true, NoEmptyValues: true, NoNULValues: true, CallerViews: true,
		OwnedAttributes: slices.Concat(ProfileFields, UserFields, FederationAttributes),
	}
}

// Get returns the attributes of the Keycloak user.
func (s *Store) Get(ctx context.Context, user string) (userattrs.Attributes, error) {
	if s.closed.Load() {
		return nil, userattrs.ErrClosed
	}
	attrs, version, _, err := s.read(ctx, user)
	if err == nil && version != "" {
		// A client that read often writes next: its merge can start here.
		s.hints.put(hintKey(ctx, user), attrs, version)
	}
	return attrs, err
}

// Update applies update to the user's attributes and writes the change.
// Merges of one user through this store take turns, which saves
// conflicts; between instances the extension keeps them atomic.
//
// Through the extension, a merge starts from the attributes and version
// this store last saw of the user, where it has them, and writes at once:
// the write holds only if they are still current, and a conflict answers
// the current ones, so that a merge is one request to Keycloak unless
// another writer came between. An updater's refusal, or a merge that
// changes nothing, counts only on attributes just read.
func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	if s.closed.Load() {
		return userattrs.ErrClosed
	}
	if _, err := userPath(user); err != nil {
		return err
	}
	unlock, err := s.locks.lock(ctx, user)
	if err != nil {
		return unavailable("wait for the user's earlier merge", err)
	}
	defer unlock()
	hint := hintKey(ctx, user)
	seen, have := s.hints.get(hint)
	for attempt := 0; ; attempt++ {
		if !have {
			seen = lastSeen{}
			if seen.attrs, seen.version, seen.rep, err = s.read(ctx, user); err != nil {
				return err
			}
			have = true
		}
		next, changed, err := store.Next(seen.attrs, update)
		if err != nil || !changed {
			if seen.hinted {
				have = false // decide on attributes just read
				continue
			}
			return err
		}
		if err := keepable(seen.attrs, next); err != nil {
			return err
		}
		if s.adminOnly {
			retry, err := s.writeAdminAPI(ctx, user, seen.rep, seen.attrs, next, attempt)
			if !retry {
				return err
			}
			have = false
		} else {
			conflict, err := s.writeExtension(ctx, user, hint, seen.version, seen.attrs, next)
			if conflict == nil {
				return err
			}
			seen = lastSeen{attrs: withoutProfile(conflict.Attributes), version: conflict.Version}
		}
		// Another writer came between the read and the write: apply the
		// merge again, after a pause that keeps writers of one user from
		// colliding in lockstep.
		select {
		case <-time.After(time.Duration(rand.IntN(1+min(attempt, 20))) * time.Millisecond):
		case <-ctx.Done():
			return unavailable("merge under contention", ctx.Err())
		}
	}
}

// writeExtension writes the changes from current to next if the user's
// attributes still have version: the extension refuses what the caller may
// not edit, and rather than drop it, what the realm's user profile would
// not keep. When the version moved, it returns the attributes the caller
// may view as they are now. hint is the key of the store's memory of the
// user as this caller sees them.
func (s *Store) writeExtension(ctx context.Context, user, hint, version string, current, next userattrs.Attributes) (conflict *versioned, err error) {
	change := struct {
		Version string               `json:"version"`
		Set     userattrs.Attributes `json:"set"`
		Remove  []string             `json:"remove"`
	}{Version: version, Set: userattrs.Attributes{}, Remove: []string{}}
	for k, v := range next {
		if !slices.Equal(current[k], v) {
			change.Set[k] = v
		}
	}
	for k := range current {
		if _, ok := next[k]; !ok {
			change.Remove = append(change.Remove, k)
		}
	}
	status, answer, err := s.putUser(ctx, s.extension, user, callerQuery(ctx), change)
	if err != nil {
		s.hints.forget(hint)
		return nil, err
	}
	switch status {
	case http.StatusOK:
		var written versioned
		if json.Unmarshal(answer, &written) == nil {
			s.hints.put(hint, next, written.Version)
		}
		return nil, nil
	case http.StatusForbidden:
		// The realm's user profile does not let the caller edit these.
		var refused struct {
			ReadOnly []string `json:"readOnly"`
		}
		if err := json.Unmarshal(answer, &refused); err != nil || len(refused.ReadOnly) == 0 {
			return nil, fmt.Errorf("keycloak: the extension refused the change without naming the attributes")
		}
		return nil, &userattrs.ReadOnlyError{Keys: refused.ReadOnly}
	case http.StatusConflict:
		var now versioned
		if err := json.Unmarshal(answer, &now); err != nil || now.Version == "" {
			return nil, fmt.Errorf("keycloak: the extension answered a conflict without the current attributes")
		}
		return &now, nil
	case http.StatusNotFound:
		s.hints.forget(hint)
		if !bytes.Contains(answer, []byte("user-not-found")) {
			return nil, errNoExtension
		}
		return nil, userattrs.ErrUserNotFound
	case http.StatusUnprocessableEntity:
		var refused struct {
			Errors []struct{ Attribute, Message string }
		}
		json.Unmarshal(answer, &refused)
		var violations []userattrs.Violation
		for _, e := range refused.Errors {
			// Keycloak's messages are message keys, never values.
			violations = append(violations, userattrs.Violation{Key: e.Attribute, Index: -1,
				Detail: "Keycloak's user profile refuses this value (" + e.Message + "); nothing was changed"})
		}
		if violations == nil {
			return nil, errors.New("keycloak: the extension refused the change without saying why")
		}
		return nil, &userattrs.InvalidError{Violations: violations}
	}
	return nil, fmt.Errorf("keycloak: PUT /users/{id} through the extension: unexpected status %d", status)
}

// lastSeen is what a merge starts from: the user's attributes (without
// profile fields), their version through the extension, and the whole
// representation through the Admin API. hinted says they come from this
// store's memory of an earlier merge rather than a read just made.
type lastSeen struct {
	attrs   userattrs.Attributes
	version string
	rep     map[string]json.RawMessage
	hinted  bool
}

// hints remember the attributes and version of users this store wrote
// last, so that the next merge of the user can write at once. They are
// only ever a guess: the extension's version check decides. A user's
// attributes as a user sees them and as an administrator does differ:
// each caller has hints of its own (hintKey).
type hints struct {
	mu    sync.Mutex
	users map[string]lastSeen
}

// maxHints bounds the memory hints take.
const maxHints = 10000

// hintKey is the key of the hints of user as the caller of ctx sees them.
func hintKey(ctx context.Context, user string) string {
	return role(userattrs.CallerOf(ctx)) + ":" + user
}

func (h *hints) get(user string) (lastSeen, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen, ok := h.users[user]
	return seen, ok
}

func (h *hints) put(user string, attrs userattrs.Attributes, version string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.users == nil {
		h.users = map[string]lastSeen{}
	}
	if _, ok := h.users[user]; !ok && len(h.users) >= maxHints {
		for k := range h.users {
			delete(h.users, k)
			break
		}
	}
	h.users[user] = lastSeen{attrs: attrs, version: version, hinted: true}
}

func (h *hints) forget(user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.users, user)
}

// writeAdminAPI writes the changes from current (what the caller sees) to
// next, if the realm's user profile lets the caller make them, with the
// whole representation (Keycloak has no PATCH: a PUT that carries
// attributes deletes the ones it omits, so the attributes the caller does
// not see go back as they were). It then reads the user again to confirm
// that Keycloak kept what was written. It asks for a retry when Keycloak
// reports a conflict, a few times.
func (s *Store) writeAdminAPI(ctx context.Context, user string, rep map[string]json.RawMessage, current, next userattrs.Attributes, attempt int) (retry bool, err error) {
	p, err := s.profile(ctx)
	if err != nil {
		return false, err
	}
	if err := p.check(current, next, userattrs.CallerOf(ctx)); err != nil {
		return false, err
	}
	var written userattrs.Attributes
	if raw, ok := rep["attributes"]; ok && string(raw) != "null" {
		json.Unmarshal(raw, &written)
	}
	if written == nil {
		written = userattrs.Attributes{}
	}
	for k := range current {
		delete(written, k)
	}
	maps.Copy(written, next)
	if rep["attributes"], err = json.Marshal(written); err != nil {
		return false, err
	}
	status, _, err := s.putUser(ctx, s.admin, user, "", rep)
	if err != nil {
		return false, err
	}
	switch {
	case status == http.StatusConflict && attempt < maxConflictRetries:
		return true, nil
	case status == http.StatusNotFound:
		return false, userattrs.ErrUserNotFound
	case status != http.StatusNoContent && status != http.StatusOK:
		return false, fmt.Errorf("keycloak: PUT /users/{id}: unexpected status %d", status)
	}
	return false, s.confirm(ctx, user, next)
}

// confirm checks that Keycloak kept the attributes just written: a realm
// whose user profile discards unmanaged attributes answers 204 and drops
// them, and the client must hear of it.
func (s *Store) confirm(ctx context.Context, user string, want userattrs.Attributes) error {
	got, _, _, err := s.read(ctx, user)
	if err != nil {
		return err
	}
	if !got.Equal(want) {
		return errors.New("keycloak: the realm did not keep the attributes written: its user profile must keep unmanaged attributes (unmanagedAttributePolicy ENABLED)")
	}
	return nil
}

// keepable rejects values Keycloak cannot keep, before anything is written:
// Keycloak silently drops an empty value, and a Keycloak on PostgreSQL
// cannot store a NUL character (it fails the request), so no Keycloak store
// takes either.
func keepable(current, next userattrs.Attributes) error {
	var violations []userattrs.Violation
	for _, k := range next.Keys() {
		if slices.Equal(next[k], current[k]) {
			continue
		}
		for i, v := range next[k] {
			detail := ""
			switch {
			case v == "":
				detail = "Keycloak cannot keep an empty value; remove the attribute with null instead"
			case strings.ContainsRune(v, 0):
				detail = "Keycloak cannot keep a NUL character in a value"
			default:
				continue
			}
			index := i
			if len(next[k]) == 1 {
				index = -1
			}
			violations = append(violations, userattrs.Violation{Key: k, Index: index, Detail: detail})
			break
		}
	}
	if violations != nil {
		return &userattrs.InvalidError{Violations: violations}
	}
	return nil
}

// Ping checks that Keycloak answers, with the extension unless told to do
// without, and that the realm keeps the attributes this service writes.
func (s *Store) Ping(ctx context.Context) error {
	if s.closed.Load() {
		return userattrs.ErrClosed
	}
	if !s.adminOnly {
		var info struct{ Extension, Protocol string }
		if err := s.getJSON(ctx, s.extension, "", &info); err != nil {
			return err
		}
		if info.Protocol != extensionProtocol {
			return errOldExtension
		}
	}
	var cfg upConfig
	if err := s.getJSON(ctx, s.admin, "/users/profile", &cfg); err != nil {
		return err
	}
	if s.adminOnly {
		if _, err := s.profile(ctx); err != nil {
			return err
		}
	}
	if cfg.UnmanagedAttributePolicy == "" {
		return errors.New(`keycloak: the realm's user profile discards unmanaged attributes (unmanagedAttributePolicy ""): set it to ENABLED`)
	}
	return nil
}

// LinkedProviders returns the aliases of the identity providers the user
// has a linked (federated) identity at.
func (s *Store) LinkedProviders(ctx context.Context, user string) ([]string, error) {
	var links []struct {
		IdentityProvider string `json:"identityProvider"`
	}
	path, err := userPath(user)
	if err != nil {
		return nil, err
	}
	if err := s.getJSON(ctx, s.admin, path+"/federated-identity", &links); err != nil {
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
	s.client.CloseIdleConnections()
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
