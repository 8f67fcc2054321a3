package main

import (
	"context"
	"errors"
	"flag"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/internal/tracing"
	"github.com/userattrs/userattrs/server"
)

type authConfig struct {
	dev                       bool
	oidcIssuer                string
	oidcAudience              string
	oidcAnyAudience           bool
	oidcKeysMaxAge            positiveDuration
	introspectionURL          string
	introspectionClientID     string
	introspectionClientSecret string
	introspectionCacheTTL     time.Duration
	requireLinked             linkRules
	linkedClaim               string
	serviceAccountClaim       string
}

// linkRules is the repeatable --require-linked-identity CLIENT=PROVIDER; in
// the environment, the rules are comma-separated.
type linkRules server.LinkedIdentityRules

func (l *linkRules) String() string { return "" }

func (l *linkRules) Set(v string) error {
	if *l == nil {
		*l = linkRules{}
	}
	for _, rule := range commaList(v) {
		client, provider, ok := strings.Cut(rule, "=")
		if !ok || client == "" || provider == "" {
			return errors.New("want CLIENT=PROVIDER")
		}
		(*l)[client] = provider
	}
	return nil
}

func (c *authConfig) flags(fs *flag.FlagSet) {
	fs.BoolVar(&c.dev, "dev", false, "development mode: trust tokens of the local development key (never in production)")
	fs.StringVar(&c.oidcIssuer, "oidc-issuer", "", "issuer URL of the OIDC provider whose JWT access tokens are accepted")
	fs.StringVar(&c.oidcAudience, "oidc-audience", "", "the audience (aud) this API's access tokens carry; required unless --oidc-any-audience")
	c.oidcKeysMaxAge = positiveDuration(5 * time.Minute)
	fs.Var(&c.oidcKeysMaxAge, "oidc-keys-max-age", "the longest the issuer's keys are used before they are fetched again "+
		"(a shorter Cache-Control max-age of the key set wins, down to 30s): a key the issuer drops stops working within this")
	fs.BoolVar(&c.oidcAnyAudience, "oidc-any-audience", false,
		"accept tokens for any audience: also ID tokens and tokens the issuer meant for its other APIs (a loud choice)")
	fs.StringVar(&c.introspectionURL, "introspection-url", "", "RFC 7662 endpoint that checks tokens that are not JWTs (all tokens without --oidc-issuer)")
	fs.StringVar(&c.introspectionClientID, "introspection-client-id", "", "client the service introspects as")
	fs.StringVar(&c.introspectionClientSecret, "introspection-client-secret", "", "its secret (prefer USERATTRS_INTROSPECTION_CLIENT_SECRET)")
	fs.DurationVar(&c.introspectionCacheTTL, "introspection-cache-ttl", 10*time.Second, "how long an introspection answer is reused (never past the token's expiry; 0: never)")
	fs.Var(&c.requireLinked, "require-linked-identity", "CLIENT=PROVIDER: calls by CLIENT need a linked identity at PROVIDER (repeatable)")
	fs.StringVar(&c.linkedClaim, "linked-identity-claim", "", "token claim listing the user's linked providers (stores other than Keycloak)")
	fs.StringVar(&c.serviceAccountClaim, "admin-service-account-claim", "",
		"a claim (the JSON boolean true; the string \"true\" does not count) that marks service accounts' tokens that carry a user id "+
			"as subject, as Keycloak's do; tokens without a subject, or with their client id as subject, are service accounts' anyway")
}

// newVerifier picks how tokens are checked: the development key with --dev;
// otherwise JWTs against the OIDC issuer and other tokens by introspection,
// as configured. With none of them the service refuses to start: it has no
// insecure default.
func newVerifier(ctx context.Context, cfg *authConfig, dataDir string, logger *slog.Logger, m *tokenMetrics) (auth.Verifier, []server.ReadinessCheck, error) {
	if cfg.dev {
		if cfg.oidcIssuer != "" || cfg.introspectionURL != "" {
			return nil, nil, errors.New("--dev excludes --oidc-issuer and --introspection-url: it trusts only the development key")
		}
		if cfg.serviceAccountClaim != "" {
			// Development tokens carry no such claim: a service account's
			// is one whose subject is its client (userattrs token --sub C --client C).
			return nil, nil, errors.New("--dev excludes --admin-service-account-claim: a development token is a service account's when its subject is its client")
		}
		key, err := auth.LoadOrCreateDevKey(dataDir)
		if err != nil {
			return nil, nil, err
		}
		logger.Warn("DEVELOPMENT MODE: trusting tokens signed by the development key in the data directory; never run this in production",
			"data_dir", dataDir)
		return auth.NewCache(key.Verifier(), auth.CacheConfig{}), nil, nil
	}
	if cfg.oidcIssuer == "" && cfg.introspectionURL == "" {
		return nil, nil, errors.New("no token issuer configured: set --oidc-issuer (USERATTRS_OIDC_ISSUER) or --introspection-url, or use --dev to try the service locally")
	}
	rules := auth.Rules{Audience: cfg.oidcAudience, AnyAudience: cfg.oidcAnyAudience, LinkedClaim: cfg.linkedClaim, ServiceAccountClaim: cfg.serviceAccountClaim}
	if err := rules.Check(); err != nil {
		return nil, nil, err
	}
	if rules.AnyAudience {
		logger.Warn("accepting access tokens for any audience (--oidc-any-audience): tokens the issuer meant for other APIs, " +
			"and ID tokens where the issuer signs them like access tokens, get in; set --oidc-audience")
	}
	var d auth.Dispatch
	var readiness []server.ReadinessCheck
	if cfg.oidcIssuer != "" {
		jwt := auth.NewOIDC(auth.OIDCConfig{Issuer: cfg.oidcIssuer, Rules: rules, MaxKeyAge: time.Duration(cfg.oidcKeysMaxAge),
			HTTPClient: &http.Client{Timeout: auth.KeysTimeout, Transport: tracing.Transport(nil, "oidc keys")}, OnFetch: m.keySetFetched})
		// Load the keys now, so that the first request does not wait for
		// them, and keep them fresh; an issuer that is not up yet is
		// retried, and one that does not match its configuration says so.
		go jwt.Run(ctx, func(err error) {
			if errors.Is(err, auth.ErrMisconfigured) {
				logger.Error("token issuer misconfigured", "error", err.Error())
				return
			}
			logger.Warn("token issuer keys not fetched", "error", err.Error())
		})
		readiness = append(readiness, server.ReadinessCheck{Name: "token issuer", Check: jwt.Ready})
		// A token seen before costs a hash instead of a signature check.
		d = append(d, auth.Route{Accepts: auth.IsJWT, Verifier: auth.NewCache(jwt, auth.CacheConfig{})})
	}
	if cfg.introspectionURL != "" {
		in := auth.NewIntrospector(auth.IntrospectionConfig{
			URL: cfg.introspectionURL, ClientID: cfg.introspectionClientID, ClientSecret: cfg.introspectionClientSecret,
			CacheTTL: cfg.introspectionCacheTTL, Rules: rules, OnIntrospect: m.introspected,
			HTTPClient: &http.Client{Timeout: auth.IntrospectionTimeout, Transport: tracing.Transport(nil, "introspection")},
		})
		readiness = append(readiness, server.ReadinessCheck{Name: "introspection", Check: in.Ready})
		d = append(d, auth.Route{Verifier: in.Cached()})
	}
	// The last route checks what no other takes: with JWTs alone, an
	// opaque token gets the JWT verifier's answer.
	d[len(d)-1].Accepts = nil
	return d, readiness, nil
}

// storeLinks reads linked identities from the store (Keycloak's federated
// identities of the user).
type storeLinks struct{ source userattrs.LinkSource }

func (s storeLinks) LinkedProviders(ctx context.Context, id auth.Identity) ([]string, error) {
	return s.source.LinkedProviders(ctx, id.Subject)
}

// claimedLinks reads linked identities from the token's claim.
type claimedLinks struct{}

func (claimedLinks) LinkedProviders(_ context.Context, id auth.Identity) ([]string, error) {
	return id.LinkedProviders, nil
}

// linkedIdentities picks where the linked identities of --require-linked-
// identity come from: the store, where it knows them, a token claim
// otherwise.
func linkedIdentities(cfg *authConfig, st userattrs.Store) (server.LinkedIdentities, error) {
	if len(cfg.requireLinked) == 0 {
		return nil, nil
	}
	if source, ok := userattrs.As[userattrs.LinkSource](st); ok {
		return storeLinks{source}, nil
	}
	if cfg.linkedClaim == "" {
		return nil, errors.New("--require-linked-identity needs a store that knows linked identities (keycloak) or --linked-identity-claim")
	}
	return claimedLinks{}, nil
}
