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

// claims are what both token paths read of a token, from a JWT's payload
// or an introspection answer.
type claims struct {
	Subject  string    `json:"sub"`
	Azp      string    `json:"azp"`
	ClientID string    `json:"client_id"`
	Scope    scopeList `json:"scope"`
	Scp      scopeList `json:"scp"`
}

// identity turns the claims of a token whose signature or activity, issuer
// and times were checked into the identity it speaks for: the one place
// where both token paths decide who a token is, so that they cannot drift
// apart. all reads the whole claim set, for the linked-identity claim.
func identity(c claims, expiry time.Time, linkedClaim string, all func() (map[string]json.RawMessage, error)) (Identity, error) {
	if c.Subject == "" {
		return Identity{}, invalid("no subject")
	}
	id := Identity{Subject: c.Subject, ClientID: c.Azp, Scopes: c.Scope, Expiry: expiry}
	if id.ClientID == "" {
		id.ClientID = c.ClientID
	}
	if id.Scopes == nil {
		id.Scopes = c.Scp
	}
	if linkedClaim != "" {
		raw, err := all()
		if err != nil {
			return Identity{}, invalid("invalid claims")
		}
		if id.LinkedProviders, err = claimList(raw, linkedClaim); err != nil {
			return Identity{}, invalid("malformed " + linkedClaim + " claim")
		}
	}
	return id, nil
}

// Identity is who a verified token speaks for.
type Identity struct {
	// Subject is the user: the token's "sub".
	Subject string
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
