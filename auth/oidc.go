package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// OIDCConfig configures verification of the tokens of an OIDC issuer.
type OIDCConfig struct {
	// Issuer is the issuer URL; tokens must carry it as "iss", and its
	// discovery document must name it exactly.
	Issuer string
	// Rules are what every token must meet beyond its signature.
	Rules Rules
	// HTTPClient fetches discovery and keys; it should have a timeout.
	HTTPClient *http.Client
	// MinRefreshInterval is the least time between two fetches of the keys
	// (default 1s): a flood of forged key ids costs the issuer at most one
	// fetch per interval, and a token signed with a key the issuer just
	// published waits at most this long.
	MinRefreshInterval time.Duration
	// MaxKeyAge is the longest the keys are used before they are fetched
	// again (default 5m); the issuer's Cache-Control max-age shortens it,
	// down to MinKeyAge. A key the issuer drops stops verifying tokens
	// within this time.
	MaxKeyAge time.Duration
	// MinKeyAge bounds how often a short max-age makes the keys refetched
	// (default 30s).
	MinKeyAge time.Duration
	// OnFetch, when set, is told the outcome of every fetch of the keys
	// (nil for a good one): the operators' count of key-set failures.
	OnFetch func(error)
}

// KeysTimeout bounds one request for the issuer's discovery document or
// keys, by the default HTTP client.
const KeysTimeout = 10 * time.Second

// NewOIDC returns a verifier for the tokens of cfg.Issuer. It fetches
// nothing yet: discovery and keys are loaded on first use, and Run loads
// them and keeps them fresh, so that the service can start before its
// issuer does.
func NewOIDC(cfg OIDCConfig) *JWTVerifier {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: KeysTimeout}
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = time.Second
	}
	if cfg.MaxKeyAge <= 0 {
		cfg.MaxKeyAge = 5 * time.Minute
	}
	if cfg.MinKeyAge <= 0 || cfg.MinKeyAge > cfg.MaxKeyAge {
		cfg.MinKeyAge = min(30*time.Second, cfg.MaxKeyAge)
	}
	return &JWTVerifier{
		issuer: cfg.Issuer,
		rules:  cfg.Rules,
		now:    time.Now,
		source: &remoteKeys{
			issuer:     cfg.Issuer,
			client:     cfg.HTTPClient,
			minRefresh: cfg.MinRefreshInterval,
			maxAge:     cfg.MaxKeyAge,
			minAge:     cfg.MinKeyAge,
			onFetch:    cfg.OnFetch,
		},
	}
}

// Ready checks that the issuer's keys are loaded, loading them if needed;
// an issuer that does not match its configuration says so.
func (v *JWTVerifier) Ready(ctx context.Context) error {
	r, ok := v.source.(*remoteKeys)
	if !ok {
		return nil
	}
	if err := r.permanentError(); err != nil {
		return err
	}
	if r.set.Load() == nil {
		_, err := r.refresh(ctx, nil)
		return err
	}
	return nil
}

// Run keeps the issuer's keys fresh until ctx ends: it fetches them again
// whenever they are older than their max age, so that a key the issuer
// dropped stops verifying tokens in time even when no token asks for a key
// the service does not know. onError hears of failed fetches.
func (v *JWTVerifier) Run(ctx context.Context, onError func(error)) {
	r, ok := v.source.(*remoteKeys)
	if !ok {
		return
	}
	var retry time.Duration // after a failed fetch
	for {
		wait := retry
		if seen := r.set.Load(); seen != nil && retry == 0 {
			wait = time.Until(seen.fetched.Add(seen.maxAge))
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		if _, err := r.refresh(ctx, r.set.Load()); err != nil {
			if ctx.Err() != nil {
				return
			}
			// Keep serving with the keys at hand; try again soon.
			onError(err)
			retry = min(max(2*retry, time.Second), 30*time.Second)
			continue
		}
		retry = 0
	}
}

// subscribe has removed called with the key ids that a refresh no longer
// found in the issuer's set.
func (v *JWTVerifier) subscribe(removed func(kids []string)) {
	if r, ok := v.source.(*remoteKeys); ok {
		r.mu.Lock()
		r.removed = append(r.removed, removed)
		r.mu.Unlock()
	}
}

// remoteKeys are an issuer's keys, found through OIDC discovery, fetched
// again on a schedule and when a token names a key id they do not have.
type remoteKeys struct {
	issuer     string
	client     *http.Client
	minRefresh time.Duration
	maxAge     time.Duration
	minAge     time.Duration
	onFetch    func(error)

	set     atomic.Pointer[keySet]
	flights singleflight.Group

	mu        sync.Mutex // guards the fields below
	jwksURL   string
	lastFetch time.Time
	lastErr   error // of the last fetch
	removed   []func(kids []string)
}

// keySet is one fetch of the issuer's signing keys.
type keySet struct {
	keys    []jose.JSONWebKey
	fetched time.Time
	maxAge  time.Duration
}

func (r *remoteKeys) keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	seen := r.set.Load()
	if seen != nil {
		if found := matchingKeys(seen.keys, kid); len(found) > 0 {
			return found, nil // a known key never waits
		}
	}
	// A key the issuer may have just published: wait for the next
	// permitted fetch rather than refuse the token.
	set, err := r.refresh(ctx, seen)
	if err != nil {
		return nil, err
	}
	return matchingKeys(set.keys, kid), nil
}

// refresh returns a key set newer than seen: one fetched since, or a new
// fetch once minRefresh has passed since the last one. Concurrent callers
// share one fetch, which does not end when one of them goes away; each
// waits only as long as its own context lets it.
func (r *remoteKeys) refresh(ctx context.Context, seen *keySet) (*keySet, error) {
	ch := r.flights.DoChan("keys", func() (any, error) {
		if current := r.set.Load(); current != seen && current != nil {
			return current, nil
		}
		r.mu.Lock()
		wait := time.Until(r.lastFetch.Add(r.minRefresh))
		r.mu.Unlock()
		if wait > 0 {
			time.Sleep(wait)
		}
		fetchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		set, err := r.fetch(fetchCtx)
		if r.onFetch != nil {
			r.onFetch(err)
		}
		r.mu.Lock()
		r.lastFetch, r.lastErr = time.Now(), err
		hooks := r.removed
		r.mu.Unlock()
		if err != nil {
			return nil, err
		}
		old := r.set.Swap(set)
		if gone := removedKeys(old, set); len(gone) > 0 {
			for _, h := range hooks {
				h(gone)
			}
		}
		return set, nil
	})
	select {
	case res := <-ch:
		switch {
		case errors.Is(res.Err, ErrMisconfigured):
			return nil, res.Err
		case res.Err != nil:
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, res.Err)
		}
		return res.Val.(*keySet), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

// permanentError is the last fetch's error when it is a configuration
// mistake that no retry mends.
func (r *remoteKeys) permanentError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if errors.Is(r.lastErr, ErrMisconfigured) {
		return r.lastErr
	}
	return nil
}

// removedKeys are the key ids of old that now has not.
func removedKeys(old, now *keySet) []string {
	if old == nil {
		return nil
	}
	var gone []string
	for _, k := range old.keys {
		if len(matchingKeys(now.keys, k.KeyID)) == 0 {
			gone = append(gone, k.KeyID)
		}
	}
	return gone
}

// discovery is what the service reads of the issuer's discovery document.
type discovery struct {
	Issuer  string `json:"issuer"`
	JWKSURL string `json:"jwks_uri"`
}

func (r *remoteKeys) fetch(ctx context.Context) (*keySet, error) {
	r.mu.Lock()
	jwksURL := r.jwksURL
	r.mu.Unlock()
	if jwksURL == "" {
		var d discovery
		if _, err := r.getJSON(ctx, strings.TrimSuffix(r.issuer, "/")+"/.well-known/openid-configuration", &d); err != nil {
			return nil, fmt.Errorf("oidc discovery: %w", err)
		}
		if d.Issuer != r.issuer {
			// Strict, as OpenID Connect Discovery 1.0 (4.3) wants it: a
			// trailing slash too many is another issuer.
			return nil, fmt.Errorf("%w: the configured issuer %q is not the issuer %q that its discovery document names: "+
				"set --oidc-issuer to exactly that", ErrMisconfigured, r.issuer, d.Issuer)
		}
		if d.JWKSURL == "" {
			return nil, errors.New("oidc discovery: no jwks_uri")
		}
		jwksURL = d.JWKSURL
		r.mu.Lock()
		r.jwksURL = jwksURL
		r.mu.Unlock()
	}
	var raw struct {
		Keys []json.RawMessage `json:"keys"`
	}
	header, err := r.getJSON(ctx, jwksURL, &raw)
	if err != nil {
		return nil, fmt.Errorf("fetch keys: %w", err)
	}
	return &keySet{keys: signingKeys(raw.Keys), fetched: time.Now(), maxAge: r.keyAge(header)}, nil
}

// signingKeys decodes the keys of a set one by one and keeps the public
// signing keys: a key for encryption, or of a type this service does not
// know, is skipped rather than spoiling the set (RFC 7517, section 5).
func signingKeys(raw []json.RawMessage) []jose.JSONWebKey {
	var keys []jose.JSONWebKey
	for _, r := range raw {
		var k jose.JSONWebKey
		if err := k.UnmarshalJSON(r); err != nil || k.Use == "enc" || !k.IsPublic() || !k.Valid() {
			continue
		}
		keys = append(keys, k)
	}
	return keys
}

// keyAge is how long a fetched key set is used: the response's max-age
// within [minAge, maxAge], else maxAge.
func (r *remoteKeys) keyAge(h http.Header) time.Duration {
	for _, directive := range strings.Split(h.Get("Cache-Control"), ",") {
		name, value, _ := strings.Cut(strings.TrimSpace(directive), "=")
		if strings.EqualFold(name, "max-age") {
			if s, err := strconv.Atoi(value); err == nil {
				return min(max(time.Duration(s)*time.Second, r.minAge), r.maxAge)
			}
		}
	}
	return r.maxAge
}

func (r *remoteKeys) getJSON(ctx context.Context, url string, v any) (http.Header, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s", resp.Status)
	}
	// Discovery documents and key sets are small; the bound keeps a broken
	// issuer from filling memory.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(v); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return resp.Header, nil
}
