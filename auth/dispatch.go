package auth

import (
	"context"
	"strings"
)

// Route sends the tokens it accepts to its verifier.
type Route struct {
	// Accepts reports, by its form, whether the route checks a token;
	// nil accepts every token.
	Accepts  func(token string) bool
	Verifier Verifier
}

// Dispatch checks each token with the first route that accepts it: a
// token issuer type is one more route.
type Dispatch []Route

// Verify checks token with the first route that accepts it.
func (d Dispatch) Verify(ctx context.Context, token string) (Identity, error) {
	for _, r := range d {
		if r.Accepts == nil || r.Accepts(token) {
			return r.Verifier.Verify(ctx, token)
		}
	}
	return Identity{}, &InvalidTokenError{Reason: "no configured issuer checks tokens of this form"}
}

// IsJWT reports whether token has the compact form of a JWS: three parts.
func IsJWT(token string) bool { return strings.Count(token, ".") == 2 }
