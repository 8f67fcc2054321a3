package auth

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"golang.org/x/sync/singleflight"
)

// IntrospectionConfig configures checking tokens by OAuth2 token
// introspection (RFC 7662), as for opaque tokens.
type IntrospectionConfig struct {
	URL          string // e.g. Keycloak's .../protocol/openid-connect/token/introspect
	ClientID     string // the client the service authenticates as
	ClientSecret string
	HTTPClient   *http.Client
	// CacheTTL is how long an answer is reused, never past the token's
	// expiry; a revoked token is refused at the latest this long after its
	// revocation. Zero disables the cache.
	CacheTTL time.Duration
	// MaxCacheEntries bounds the cache (default 10000).
	MaxCacheEntries int
	// LinkedClaim, when set, names the claim of the introspection answer
	// that lists the identity providers the user has linked identities at.
	LinkedClaim string
}

// Introspector checks tokens at an RFC 7662 introspection endpoint.
type Introspector struct {
	cfg     IntrospectionConfig
	flights singleflight.Group
	cache   *tokenCache
	now     func() time.Time
}

// NewIntrospector returns an Introspector for cfg.
func NewIntrospector(cfg IntrospectionConfig) *Introspector {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 5 * time.Second}
	}
	if cfg.MaxCacheEntries <= 0 {
		cfg.MaxCacheEntries = 10000
	}
	return &Introspector{cfg: cfg, cache: newTokenCache(cfg.MaxCacheEntries), now: time.Now}
}

type cached struct {
	id    Identity
	err   error // ErrInvalidToken for an inactive token
	until time.Time
}

// Verify introspects token, or reuses a recent answer for it. An inactive
// token is ErrInvalidToken; an endpoint that fails is ErrUnavailable.
func (in *Introspector) Verify(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	now := in.now()
	if c, ok := in.cache.get(key, now); ok {
		return c.id, c.err
	}
	// Concurrent requests with one token share one introspection.
	v, err, _ := in.flights.Do(string(key[:]), func() (any, error) {
		id, err := in.introspect(ctx, token)
		if err != nil && !isInvalid(err) {
			return nil, err
		}
		c := cached{id: id, err: err, until: now.Add(in.cfg.CacheTTL)}
		if err == nil && id.Expiry.Before(c.until) {
			c.until = id.Expiry
		}
		if in.cfg.CacheTTL > 0 {
			in.cache.put(key, c, now)
		}
		return c, nil
	})
	if err != nil {
		return Identity{}, err
	}
	c := v.(cached)
	return c.id, c.err
}

func isInvalid(err error) bool { return errors.Is(err, ErrInvalidToken) }

type introspection struct {
	Active    bool        `json:"active"`
	Subject   string      `json:"sub"`
	ClientID  string      `json:"client_id"`
	Azp       string      `json:"azp"`
	Scope     scopeList   `json:"scope"`
	Scp       scopeList   `json:"scp"`
	Expiry    json.Number `json:"exp"`
	NotBefore json.Number `json:"nbf"`
}

func (in *Introspector) introspect(ctx context.Context, token string) (Identity, error) {
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, in.cfg.URL, strings.NewReader(form.Encode()))
	if err != nil {
		return Identity{}, err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	req.SetBasicAuth(url.QueryEscape(in.cfg.ClientID), url.QueryEscape(in.cfg.ClientSecret))
	resp, err := in.cfg.HTTPClient.Do(req)
	if err != nil {
		return Identity{}, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return Identity{}, fmt.Errorf("%w: introspection: %w", ErrUnavailable, err)
	}
	if resp.StatusCode != http.StatusOK {
		// Never 200 for a token that could not be checked.
		return Identity{}, fmt.Errorf("%w: introspection answered %d", ErrUnavailable, resp.StatusCode)
	}
	var r introspection
	if err := json.Unmarshal(body, &r); err != nil {
		return Identity{}, fmt.Errorf("%w: introspection: undecodable answer", ErrUnavailable)
	}
	if !r.Active {
		return Identity{}, invalid("inactive")
	}
	now := in.now()
	exp, err := r.Expiry.Int64()
	if err != nil {
		return Identity{}, invalid("no expiry")
	}
	expiry := time.Unix(exp, 0)
	if now.After(expiry.Add(Leeway)) {
		return Identity{}, invalid("expired")
	}
	if nbf, err := r.NotBefore.Int64(); err == nil && now.Add(Leeway).Before(time.Unix(nbf, 0)) {
		return Identity{}, invalid("not valid yet")
	}
	if r.Subject == "" {
		return Identity{}, invalid("no subject")
	}
	id := Identity{Subject: r.Subject, ClientID: r.Azp, Scopes: r.Scope, Expiry: expiry}
	if id.ClientID == "" {
		id.ClientID = r.ClientID
	}
	if id.Scopes == nil {
		id.Scopes = r.Scp
	}
	if in.cfg.LinkedClaim != "" {
		var all map[string]json.RawMessage
		if err := json.Unmarshal(body, &all); err != nil {
			return Identity{}, fmt.Errorf("%w: introspection: undecodable answer", ErrUnavailable)
		}
		if id.LinkedProviders, err = claimList(all, in.cfg.LinkedClaim); err != nil {
			return Identity{}, invalid("malformed " + in.cfg.LinkedClaim + " claim")
		}
	}
	return id, nil
}

// claimList reads a claim as a list of strings: an array, or a
// space-separated string.
func claimList(claims map[string]json.RawMessage, name string) ([]string, error) {
	raw, ok := claims[name]
	if !ok {
		return nil, nil
	}
	var list scopeList
	err := json.Unmarshal(raw, &list)
	return list, err
}

// tokenCache holds introspection answers by token hash, bounded in size.
type tokenCache struct {
	mu      sync.Mutex
	max     int
	entries map[[sha256.Size]byte]cached
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: map[[sha256.Size]byte]cached{}}
}

func (c *tokenCache) get(key [sha256.Size]byte, now time.Time) (cached, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[key]
	if !ok || !now.Before(e.until) {
		return cached{}, false
	}
	return e, true
}

func (c *tokenCache) put(key [sha256.Size]byte, e cached, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, old := range c.entries {
			if !now.Before(old.until) {
				delete(c.entries, k)
			}
		}
		// Still full: drop arbitrary entries; they are only a cache.
		for k := range c.entries {
			if len(c.entries) < c.max {
				break
			}
			delete(c.entries, k)
		}
	}
	c.entries[key] = e
}

// Dispatch checks JWTs with a local verifier and every other token by
// introspection; either may be nil when not configured.
type Dispatch struct {
	JWT           *JWTVerifier
	Introspection *Introspector
}

// Verify picks how token is checked by its form.
func (d Dispatch) Verify(ctx context.Context, token string) (Identity, error) {
	if d.JWT != nil && (d.Introspection == nil || strings.Count(token, ".") == 2) {
		return d.JWT.Verify(ctx, token)
	}
	return d.Introspection.Verify(ctx, token)
}
