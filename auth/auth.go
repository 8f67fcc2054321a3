// Package auth turns bearer tokens into identities: JWTs verified against an
// OIDC issuer's keys, or against the local development key.
package auth

import (
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
	// wrapped text says which, without quoting the token.
	ErrInvalidToken = errors.New("invalid token")
	// ErrUnavailable: the token could not be checked because the issuer (its
	// discovery document or keys) did not answer.
	ErrUnavailable = errors.New("token issuer unavailable")
)

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
