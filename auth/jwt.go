package auth

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Algorithms are the signature algorithms a token may use. "none" and the
// HMAC family are absent on purpose: an HMAC keyed with a public key is the
// classic forgery.
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA}

// Leeway is how far clocks may disagree when checking exp, nbf and iat.
const Leeway = 30 * time.Second

// keySource finds the keys that may have signed a token.
type keySource interface {
	// keys returns the candidate keys for a key id; an empty kid asks for
	// every signing key.
	keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

// JWTVerifier verifies signed JWT access tokens of one issuer.
type JWTVerifier struct {
	issuer      string
	audience    string
	linkedClaim string
	source      keySource
	now         func() time.Time
}

// Verify checks the token's signature, algorithm, issuer, audience and
// times, and returns its identity.
func (v *JWTVerifier) Verify(ctx context.Context, raw string) (Identity, error) {
	tok, err := jwt.ParseSigned(raw, Algorithms)
	if err != nil {
		return Identity{}, invalid("not a signed JWT with an accepted algorithm")
	}
	if len(tok.Headers) != 1 {
		return Identity{}, invalid("not exactly one signature")
	}
	header := tok.Headers[0]
	candidates, err := v.source.keys(ctx, header.KeyID)
	if err != nil {
		return Identity{}, err
	}
	var registered jwt.Claims
	var claims claims
	verified := false
	for _, k := range candidates {
		if k.Algorithm != "" && k.Algorithm != header.Algorithm {
			continue
		}
		if err := tok.Claims(k.Key, &registered, &claims); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		if len(candidates) == 0 {
			return Identity{}, invalid("signed with an unknown key")
		}
		return Identity{}, invalid("bad signature")
	}

	if registered.Expiry == nil {
		return Identity{}, invalid("no expiry")
	}
	err = registered.ValidateWithLeeway(jwt.Expected{Issuer: v.issuer, Time: v.now()}, Leeway)
	switch {
	case errors.Is(err, jwt.ErrExpired):
		return Identity{}, invalid("expired")
	case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
		return Identity{}, invalid("not valid yet")
	case errors.Is(err, jwt.ErrInvalidIssuer):
		return Identity{}, invalid("wrong issuer")
	case err != nil:
		return Identity{}, invalid("invalid claims")
	}
	if v.audience != "" && !registered.Audience.Contains(v.audience) {
		return Identity{}, invalid("wrong audience")
	}
	return identity(claims, registered.Expiry.Time(), v.linkedClaim, func() (map[string]json.RawMessage, error) {
		// The signature is verified above; this reads the same payload.
		var all map[string]json.RawMessage
		err := tok.UnsafeClaimsWithoutVerification(&all)
		return all, err
	})
}

// staticKeys is a fixed key set, as the development key is.
type staticKeys []jose.JSONWebKey

func (s staticKeys) keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	return matchingKeys(s, kid), nil
}

// matchingKeys returns the signing keys of set with the given key id, or all
// signing keys when kid is empty.
func matchingKeys(set []jose.JSONWebKey, kid string) []jose.JSONWebKey {
	var out []jose.JSONWebKey
	for _, k := range set {
		if (kid == "" || k.KeyID == kid) && (k.Use == "" || k.Use == "sig") {
			out = append(out, k)
		}
	}
	return out
}
