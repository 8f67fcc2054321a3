// Package auth turns bearer tokens into identities: JWTs verified against an
// OIDC issuer's keys, or against the local development key.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/go-jose/go-jose/v4/jwt"
)

// Errors a verifier returns, tested with errors.Is.
var (
	// ErrInvalidToken: the token is malformed, expired, not yet valid, for
	// another issuer or audience, badly signed, or has no subject. The
	// error is an *InvalidTokenError, whose Reason says which.
	ErrInvalidToken = errors.New("invalid token")
	// ErrUnavailable: the token could not be checked because the issuer (its
	// discovery document or keys) did not answer.
	ErrUnavailable = errors.New("token issuer unavailable")
)

// InvalidTokenError is a token that is refused, and why.
type InvalidTokenError struct {
	// Reason says what is wrong without quoting the token, e.g. "expired".
	Reason string
}

func (e *InvalidTokenError) Error() string        { return "invalid token: " + e.Reason }
func (e *InvalidTokenError) Is(target error) bool { return target == ErrInvalidToken }

func invalid(reason string) error { return &InvalidTokenError{Reason: reason} }

// Verifier checks a bearer token and returns the identity it carries.
type Verifier interface {
	Verify(ctx context.Context, token string) (Identity, error)
}

// ErrMisconfigured: the token could not be checked because of the
// service's own configuration (an issuer URL that is not the issuer's,
// introspection credentials the endpoint refuses). Not a client's fault,
// and not temporary: the wrapped text says what to fix.
var ErrMisconfigured = errors.New("token checks misconfigured")

// Rules are what every token must meet, whichever path checked it.
type Rules struct {
	// Audience must be one of the token's audiences. Empty accepts any
	// audience, which only AnyAudience may ask for.
	Audience string
	// AnyAudience accepts tokens for any audience: also ID tokens and
	// tokens the issuer meant for its other APIs. A loud choice.
	AnyAudience bool
	// ServiceAccountClaim names a claim that marks a service account's
	// token whose subject is a user id all the same (Keycloak gives each
	// service account a user): the claim is true, or the string "true".
	ServiceAccountClaim string
	// LinkedClaim, when set, names the claim that lists the identity
	// providers the user has linked identities at.
	LinkedClaim string
}

// Check says what is wrong with the rules themselves.
func (r Rules) Check() error {
	if r.Audience == "" && !r.AnyAudience {
		return errors.New("no audience: set the audience this API's access tokens carry (--oidc-audience), " +
			"or accept tokens for any audience on purpose (--oidc-any-audience)")
	}
	return nil
}

// maxSubjectBytes bounds a subject: OpenID Connect caps it at 255 ASCII
// characters, and every store can keep and tell apart that many bytes.
const maxSubjectBytes = 255

// claims are what both token paths read of a token, from a JWT's payload
// or an introspection answer.
type claims struct {
	Subject  string       `json:"sub"`
	Azp      string       `json:"azp"`
	ClientID string       `json:"client_id"`
	Scope    scopeList    `json:"scope"`
	Scp      scopeList    `json:"scp"`
	Audience jwt.Audience `json:"aud"`
	// Typ is Keycloak's kind of token: Bearer (access), Refresh, ID,
	// Logout...
	Typ string `json:"typ"`
}

// identity turns the claims of a token whose signature (or activity),
// issuer and times were checked into the identity it speaks for: the one
// place where both token paths decide whether a token is an access token
// for this API and whom it is for, so that they cannot drift apart. all
// reads the whole claim set, for the linked-identity claim.
func (r Rules) identity(c claims, expiry time.Time, all func() (map[string]json.RawMessage, error)) (Identity, error) {
	if c.Typ != "" && !strings.EqualFold(c.Typ, "Bearer") {
		return Identity{}, invalid("not an access token")
	}
	if r.Audience != "" && !c.Audience.Contains(r.Audience) {
		return Identity{}, invalid("wrong audience")
	}
	id := Identity{Subject: c.Subject, ClientID: c.Azp, Scopes: c.Scope, Expiry: expiry}
	if id.ClientID == "" {
		id.ClientID = c.ClientID
	}
	// A client's own token (client credentials) speaks for no user: it has
	// no subject, or its client's id as one, or the claim the operator
	// names for service accounts. Only the admin API takes it.
	id.ServiceAccount = c.Subject == "" || c.Subject == id.ClientID
	var raw map[string]json.RawMessage
	if r.LinkedClaim != "" || r.ServiceAccountClaim != "" {
		var err error
		if raw, err = all(); err != nil {
			return Identity{}, invalid("invalid claims")
		}
	}
	if r.ServiceAccountClaim != "" && !id.ServiceAccount {
		id.ServiceAccount = claimIsTrue(raw, r.ServiceAccountClaim)
	}
	switch {
	case id.ServiceAccount && id.ClientID == "":
		return Identity{}, invalid("no subject and no client id")
	case c.Subject != "":
		if err := SubjectProblem(c.Subject); err != "" {
			return Identity{}, invalid(err)
		}
	}
	if len(id.Scopes) == 0 {
		id.Scopes = c.Scp
	}
	if r.LinkedClaim != "" {
		var err error
		if id.LinkedProviders, err = claimList(raw, r.LinkedClaim); err != nil {
			return Identity{}, invalid("malformed " + r.LinkedClaim + " claim")
		}
	}
	return id, nil
}

// SubjectProblem says why no store could keep a subject as a user id, or
// tell it apart from another: "" when it can.
func SubjectProblem(sub string) string {
	switch {
	case sub == "":
		return "no subject"
	case len(sub) > maxSubjectBytes:
		return "a subject longer than 255 bytes"
	case !utf8.ValidString(sub):
		return "a subject that is not UTF-8"
	case strings.ContainsFunc(sub, unicode.IsControl):
		return "a subject with control characters"
	}
	return ""
}

// Identity is who a verified token speaks for.
type Identity struct {
	// Subject is the user: the token's "sub"; for a service account, its
	// "sub" if it has one.
	Subject string
	// ServiceAccount: the token is a client's own (client credentials),
	// which speaks for no user.
	ServiceAccount bool
	// ClientID is the application the token was issued to: "azp", or
	// "client_id" when there is no "azp".
	ClientID string
	// Scopes are the granted scopes, from "scope" (space separated) or "scp"
	// (an array).
	Scopes []string
	// Expiry is when the token stops being valid.
	Expiry time.Time
	// LinkedProviders are the identity providers the token says the user
	// has linked identities at, when a claim for them is configured.
	LinkedProviders []string
	// KeyID is the id of the key that signed a JWT, so that what a key
	// signed can be forgotten when the issuer drops the key.
	KeyID string
}

// Actor is who the identity speaks for, as history records name it: the
// subject, or the client where there is none.
func (id Identity) Actor() string {
	if id.Subject == "" {
		return id.ClientID
	}
	return id.Subject
}

// HasScope reports whether the token grants scope.
func (id Identity) HasScope(scope string) bool {
	return slices.Contains(id.Scopes, scope)
}

// scopeList is "scope" or "scp": a space-separated string or an array of
// strings, as issuers differ.
type scopeList []string

func (s *scopeList) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*s = strings.Fields(str)
		return nil
	}
	var list []string
	if err := json.Unmarshal(b, &list); err != nil {
		return err
	}
	*s = list
	return nil
}
