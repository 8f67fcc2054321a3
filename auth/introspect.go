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
	"time"

	"golang.org/x/sync/singleflight"

	"github.com/userattrs/userattrs/internal/strictjson"
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
	// MaxCacheEntries bounds the cache (default 50000).
	MaxCacheEntries int
	// Rules are what every token must meet, as on the JWT path.
	Rules Rules
	// OnIntrospect, when set, is told the outcome of every call of the
	// endpoint: nil for an active token, an ErrInvalidToken for a token
	// it refused, another error where the endpoint failed.
	OnIntrospect func(error)
}

// Introspector checks tokens at an RFC 7662 introspection endpoint. Put it
// behind a Cache (NewIntrospector does) so that a token is not introspected
// on every request.
type Introspector struct {
	cfg     IntrospectionConfig
	flights singleflight.Group
	now     func() time.Time
}

// IntrospectionTimeout bounds one introspection call, by the default HTTP
// client.
const IntrospectionTimeout = 5 * time.Second

// NewIntrospector returns a verifier that introspects tokens.
func NewIntrospector(cfg IntrospectionConfig) *Introspector {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: IntrospectionTimeout}
	}
	return &Introspector{cfg: cfg, now: time.Now}
}

// Cached returns the introspector behind a cache that remembers accepted
// tokens for the configured CacheTTL (never past their expiry).
func (in *Introspector) Cached() Verifier {
	if in.cfg.CacheTTL <= 0 {
		return in
	}
	return NewCache(in, CacheConfig{TTL: in.cfg.CacheTTL, MaxEntries: in.cfg.MaxCacheEntries})
}

// Ready checks that the endpoint answers and accepts the service's own
// credentials, by introspecting a token no issuer made.
func (in *Introspector) Ready(ctx context.Context) error {
	_, err := in.introspect(ctx, "userattrs-readiness-probe")
	if errors.Is(err, ErrInvalidToken) {
		return nil
	}
	return err
}

// Verify introspects token. An inactive token is ErrInvalidToken; an
// endpoint that fails is ErrUnavailable. Concurrent requests with one token
// share one introspection.
func (in *Introspector) Verify(ctx context.Context, token string) (Identity, error) {
	key := sha256.Sum256([]byte(token))
	// The introspection is shared by every caller with this token, so it
	// must not end when the first of them hangs up; each caller waits only
	// as long as its own context lets it.
	ch := in.flights.DoChan(string(key[:]), func() (any, error) {
		return in.introspect(context.WithoutCancel(ctx), token)
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return Identity{}, res.Err
		}
		return res.Val.(Identity), nil
	case <-ctx.Done():
		return Identity{}, fmt.Errorf("%w: introspection: %w", ErrUnavailable, ctx.Err())
	}
}

type introspection struct {
	claims
	Active    bool        `json:"active"`
	TokenType string      `json:"token_type"`
	Expiry    json.Number `json:"exp"`
	NotBefore json.Number `json:"nbf"`
}

func (in *Introspector) introspect(ctx context.Context, token string) (Identity, error) {
	id, err := in.call(ctx, token)
	if in.cfg.OnIntrospect != nil {
		in.cfg.OnIntrospect(err)
	}
	return id, err
}

func (in *Introspector) call(ctx context.Context, token string) (Identity, error) {
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
	switch {
	case resp.StatusCode == http.StatusBadRequest && oauthError(body) != "":
		// The endpoint refuses this token, not the service: a JWT it does
		// not introspect (unsupported_token_type), or something it cannot
		// read as a token.
		return Identity{}, invalid("the issuer does not introspect this token")
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return Identity{}, fmt.Errorf("%w: the introspection endpoint refuses the service's client credentials (answered %d): "+
			"check --introspection-client-id and its secret", ErrMisconfigured, resp.StatusCode)
	case resp.StatusCode != http.StatusOK:
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
	if strictjson.Object(body) != nil {
		return Identity{}, invalid("invalid claims")
	}
	switch {
	case r.TokenType != "" && !strings.EqualFold(r.TokenType, "Bearer") && !strings.EqualFold(r.TokenType, "access_token"):
		return Identity{}, invalid("not an access token")
	case r.TokenType == "" && r.Typ == "" && in.cfg.Rules.Audience == "":
		// A refresh token of some issuers differs from an access token
		// only in its type and audience: with neither, refuse.
		return Identity{}, invalid("the introspection answer does not say it is an access token")
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
	return in.cfg.Rules.identity(r.claims, expiry, func() (map[string]json.RawMessage, error) {
		var all map[string]json.RawMessage
		err := json.Unmarshal(body, &all)
		return all, err
	})
}

// oauthError returns the "error" of an OAuth error answer, or "".
func oauthError(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	json.Unmarshal(body, &e)
	return e.Error
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

// claimIsTrue reports whether a claim is the JSON boolean true. The string
// "true" is not: Keycloak's user-attribute mappers emit strings, so a realm
// that maps a user attribute into this claim would let users who set that
// attribute make themselves service accounts.
func claimIsTrue(claims map[string]json.RawMessage, name string) bool {
	return strings.TrimSpace(string(claims[name])) == "true"
}
