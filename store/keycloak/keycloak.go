// Package keycloak keeps attributes where the identity provider keeps them:
// on the Keycloak user, with a service-account client. Merges go through
// the userattrs extension of Keycloak (keycloak-extension/), which writes
// changes only while the version read still holds, under a row lock: atomic
// across every instance. Without the extension, and only when the operator
// says so, merges go through the Admin REST API, atomic within one instance
// only.
package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/tracing"
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
		client:    &http.Client{Timeout: cfg.Timeout, Transport: tracing.Transport(transport(), "keycloak")},
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
