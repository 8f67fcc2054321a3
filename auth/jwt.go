package auth

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/userattrs/userattrs/internal/strictjson"
)

// Algorithms are the signature algorithms a token may use: RS256, PS256,
// ES256, and Ed25519 under both its names (EdDSA, and Ed25519 as RFC 9864
// names it). "none" and the HMAC family are absent on purpose: an HMAC
// keyed with a public key is the classic forgery.
var Algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.PS256, jose.ES256, jose.EdDSA, Ed25519}

// Ed25519 is the fully specified algorithm of RFC 9864, which go-jose
// does not know by this name.
const Ed25519 = jose.SignatureAlgorithm("Ed25519")

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
	issuer string
	rules  Rules
	source keySource
	now    func() time.Time
}

// accessTokenTypes are the JWT "typ" headers of access tokens: RFC 9068's,
// and plain "JWT", which Keycloak and others sign access tokens with (their
// ID tokens, also "JWT", are told apart by the typ claim and the audience).
var accessTokenTypes = []string{"at+jwt", "application/at+jwt", "jwt"}

// Verify checks the token's type, signature, algorithm, issuer, audience
// and times, and returns its identity.
func (v *JWTVerifier) Verify(ctx context.Context, raw string) (Identity, error) {
	jws, err := jose.ParseSignedCompact(raw, Algorithms)
	if err != nil {
		return Identity{}, invalid("not a signed JWT with an accepted algorithm")
	}
	if len(jws.Signatures) != 1 {
		return Identity{}, invalid("not exactly one signature")
	}
	header := jws.Signatures[0].Header
	typ, _ := header.ExtraHeaders[jose.HeaderType].(string)
	if !slices.Contains(accessTokenTypes, strings.ToLower(typ)) {
		return Identity{}, invalid("not an access token")
	}
	candidates, err := v.source.keys(ctx, header.KeyID)
	if err != nil {
		return Identity{}, err
	}
	var payload []byte
	var signedBy string
	for _, k := range candidates {
		if key := verificationKey(k, header.Algorithm); key != nil {
			if p, err := jws.Verify(key); err == nil {
				payload, signedBy = p, k.KeyID
				break
			}
		}
	}
	if payload == nil {
		if len(candidates) == 0 {
			return Identity{}, invalid("signed with an unknown key")
		}
		return Identity{}, invalid("bad signature")
	}

	// The signature holds; from here on what is wrong is the claims.
	var registered jwt.Claims
	var c claims
	if strictjson.Object(payload) != nil || json.Unmarshal(payload, &registered) != nil || json.Unmarshal(payload, &c) != nil {
		return Identity{}, invalid("invalid claims")
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
	id, err := v.rules.identity(c, registered.Expiry.Time(), func() (map[string]json.RawMessage, error) {
		var all map[string]json.RawMessage
		err := json.Unmarshal(payload, &all)
		return all, err
	})
	id.KeyID = signedBy
	return id, err
}

// verificationKey returns what verifies a signature of alg with k, or nil
// when k is not for alg.
func verificationKey(k jose.JSONWebKey, alg string) any {
	edKey, isEd := k.Key.(ed25519.PublicKey)
	switch {
	case alg == string(Ed25519) || alg == string(jose.EdDSA):
		if !isEd || (k.Algorithm != "" && k.Algorithm != string(Ed25519) && k.Algorithm != string(jose.EdDSA)) {
			return nil
		}
		return ed25519Verifier(edKey)
	case k.Algorithm != "" && k.Algorithm != alg:
		return nil
	}
	return k.Key
}

// ed25519Verifier verifies Ed25519 signatures under either algorithm name.
type ed25519Verifier ed25519.PublicKey

func (v ed25519Verifier) VerifyPayload(payload, signature []byte, alg jose.SignatureAlgorithm) error {
	if (alg != Ed25519 && alg != jose.EdDSA) || !ed25519.Verify(ed25519.PublicKey(v), payload, signature) {
		return errors.New("ed25519: invalid signature")
	}
	return nil
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
