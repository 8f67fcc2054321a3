package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"
	"golang.org/x/sync/singleflight"
)

// OIDCConfig configures verification of the tokens of an OIDC issuer.
type OIDCConfig struct {
	// Issuer is the issuer URL; tokens must carry it as "iss", and its
	// discovery document names the JWKS.
	Issuer string
	// Audience, when set, must be one of the token's "aud" values.
	Audience string
	// LinkedClaim, when set, names the claim that lists the identity
	// providers the user has linked identities at.
	LinkedClaim string
	// HTTPClient fetches discovery and keys; it should have a timeout.
	HTTPClient *http.Client
	// MinRefreshInterval is the least time between two fetches of the keys
	// caused by tokens naming an unknown key id (default 10s). It stops a
	// flood of forged key ids from becoming a flood against the issuer.
	MinRefreshInterval time.Duration
}

// NewOIDC returns a verifier for the tokens of cfg.Issuer. It fetches
// nothing yet: discovery and keys are loaded on first use, and Ready loads
// them eagerly, so that the service can start before its issuer does.
func NewOIDC(cfg OIDCConfig) *JWTVerifier {
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	if cfg.MinRefreshInterval <= 0 {
		cfg.MinRefreshInterval = 10 * time.Second
	}
	return &JWTVerifier{
		issuer:      cfg.Issuer,
		audience:    cfg.Audience,
		linkedClaim: cfg.LinkedClaim,
		now:         time.Now,
		source: &remoteKeys{
			issuer:     cfg.Issuer,
			client:     cfg.HTTPClient,
			minRefresh: cfg.MinRefreshInterval,
		},
	}
}

// Ready checks that the issuer's keys are loaded, loading them if needed.
func (v *JWTVerifier) Ready(ctx context.Context) error {
	if r, ok := v.source.(*remoteKeys); ok && r.set.Load() == nil {
		_, err := r.refresh(ctx)
		return err
	}
	return nil
}

// remoteKeys are an issuer's keys, found through OIDC discovery and fetched
// again when a token names a key id they do not have, so that a key
// rotation needs no restart.
type remoteKeys struct {
	issuer     string
	client     *http.Client
	minRefresh time.Duration

	set     atomic.Pointer[jose.JSONWebKeySet]
	flights singleflight.Group

	mu          sync.Mutex // guards the fields below
	jwksURL     string
	lastAttempt time.Time
	lastErr     error // of the last attempt, while no keys were ever loaded
}

// retryWithoutKeys is the least time between two fetches while no keys were
// ever loaded: requests then fail fast instead of each hitting an issuer
// that is down.
const retryWithoutKeys = time.Second

func (r *remoteKeys) keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	if set := r.set.Load(); set != nil {
		if found := matchingKeys(set.Keys, kid); len(found) > 0 {
			return found, nil
		}
	}
	set, err := r.refresh(ctx)
	if err != nil {
		return nil, err
	}
	return matchingKeys(set.Keys, kid), nil
}

// refresh fetches the keys unless that was tried within minRefresh, in which
// case it returns what it has. Concurrent callers share one fetch.
func (r *remoteKeys) refresh(ctx context.Context) (*jose.JSONWebKeySet, error) {
	ch := r.flights.DoChan("keys", func() (any, error) {
		r.mu.Lock()
		current := r.set.Load()
		since := time.Since(r.lastAttempt)
		if current != nil && since < r.minRefresh {
			r.mu.Unlock()
			return current, nil
		}
		if current == nil && since < retryWithoutKeys && r.lastErr != nil {
			err := r.lastErr
			r.mu.Unlock()
			return nil, err
		}
		r.lastAttempt = time.Now()
		r.mu.Unlock()

		// A fetch outlives the request that caused it: others wait on it.
		fetchCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
		defer cancel()
		set, err := r.fetch(fetchCtx)
		r.mu.Lock()
		r.lastErr = err
		r.mu.Unlock()
		if err != nil {
			return current, err
		}
		r.set.Store(set)
		return set, nil
	})
	select {
	case res := <-ch:
		if res.Err != nil {
			return nil, fmt.Errorf("%w: %w", ErrUnavailable, res.Err)
		}
		return res.Val.(*jose.JSONWebKeySet), nil
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, ctx.Err())
	}
}

func (r *remoteKeys) fetch(ctx context.Context) (*jose.JSONWebKeySet, error) {
	r.mu.Lock()
	jwksURL := r.jwksURL
	r.mu.Unlock()
	if jwksURL == "" {
		provider, err := oidc.NewProvider(oidc.ClientContext(ctx, r.client), r.issuer)
		if err != nil {
			return nil, fmt.Errorf("oidc discovery: %w", err)
		}
		var meta struct {
			JWKSURL string `json:"jwks_uri"`
		}
		if err := provider.Claims(&meta); err != nil || meta.JWKSURL == "" {
			return nil, fmt.Errorf("oidc discovery: no jwks_uri")
		}
		jwksURL = meta.JWKSURL
		r.mu.Lock()
		r.jwksURL = jwksURL
		r.mu.Unlock()
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, jwksURL, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch keys: %s", resp.Status)
	}
	var set jose.JSONWebKeySet
	// A key set is small; the bound keeps a broken issuer from filling memory.
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("decode keys: %w", err)
	}
	return &set, nil
}
