package server

import (
	"context"
	"errors"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/userattrs/userattrs/auth"
)

// LinkedIdentities tells at which third-party identity providers the user
// of a token has linked identities: the Keycloak store asks Keycloak, other
// setups read a token claim.
type LinkedIdentities interface {
	LinkedProviders(ctx context.Context, id auth.Identity) ([]string, error)
}

// LinkedIdentityRules require, for calls by a client, that the user has a
// linked identity at a provider: client id -> provider alias.
type LinkedIdentityRules map[string]string

// authenticator checks the token, its scope and the linked-identity rule of
// its client before a handler runs.
type authenticator struct {
	verifier auth.Verifier
	rules    LinkedIdentityRules
	links    LinkedIdentities
	timeout  time.Duration // of a token check; 0: none
	limits   *rateLimiter
}

// The scopes of the routes.
const (
	scopeRead  = "user:attributes:read"
	scopeWrite = "user:attributes:write"
	scopeAdmin = "user:attributes:admin"
)

// maxTokenBytes bounds the bearer token; real access tokens, Keycloak's with
// many roles included, stay far below it.
const maxTokenBytes = 16 << 10

const realm = `Bearer realm="userattrs"`

// identity returns the identity the authenticator found for the request.
func identity(ctx context.Context) auth.Identity {
	if s := stateFrom(ctx); s != nil {
		return s.identity
	}
	return auth.Identity{}
}

// bearerToken returns the token of an "Authorization: Bearer" header, and
// whether the request offered a bearer token at all.
func bearerToken(r *http.Request) (token string, offered bool) {
	h := r.Header.Get("Authorization")
	scheme, rest, _ := strings.Cut(h, " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	return strings.TrimSpace(rest), true
}

// verify checks the token within the check timeout: a slow issuer costs a
// request that bound, then 503.
func (a authenticator) verify(ctx context.Context, token string) (auth.Identity, error) {
	if a.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.timeout)
		defer cancel()
	}
	return a.verifier.Verify(ctx, token)
}

// require lets a request through when it carries a valid user's token with
// scope, whose user has the linked identity its client requires, and
// answers 401 or 403 (RFC 6750) otherwise.
func (a authenticator) require(scope string, next http.Handler) http.Handler {
	return a.check(scope, false, next)
}

// requireAdmin lets a request through when it carries a valid service
// account's token with the admin scope: a user's token never reaches
// another user, whatever scopes it claims.
func (a authenticator) requireAdmin(next http.Handler) http.Handler {
	return a.check(scopeAdmin, true, next)
}

// tarpit waits d, or until ctx ends.
func tarpit(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// notAUser says why a service account's token is no user's.
func notAUser(id auth.Identity) string {
	switch id.Subject {
	case "":
		return "no subject"
	case id.ClientID:
		return "a client's own token, not a user's"
	}
	return "a service account's token, not a user's"
}

func (a authenticator) check(scope string, admin bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, offered := bearerToken(r)
		if !offered {
			w.Header().Set("WWW-Authenticate", realm)
			writeErrors(w, r, newError(http.StatusUnauthorized, codeMissingToken,
				"this resource needs an OAuth2 bearer token in the Authorization header"))
			return
		}
		var id auth.Identity
		var err error
		if token == "" || len(token) > maxTokenBytes {
			err = &auth.InvalidTokenError{Reason: "empty or too long"}
		} else {
			id, err = a.verify(r.Context(), token)
		}
		if err == nil && id.ServiceAccount && !admin {
			err = &auth.InvalidTokenError{Reason: notAUser(id)}
		}
		if invalid := (*auth.InvalidTokenError)(nil); errors.As(err, &invalid) {
			w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token"`)
			writeErrors(w, r, newError(http.StatusUnauthorized, codeInvalidToken,
				"the bearer token is not valid: "+invalid.Reason))
			return
		}
		if err != nil {
			writeError(w, r, err)
			return
		}
		// The request state, already in the context, carries the identity
		// on to the handler and the request log.
		if s := stateFrom(r.Context()); s != nil {
			s.identity = id
		}
		if admin && !id.ServiceAccount {
			writeErrors(w, r, newError(http.StatusForbidden, codeServiceAccountRequired,
				"the admin API takes a service account's token (client credentials), never a user's"))
			return
		}
		if !id.HasScope(scope) {
			w.Header().Set("WWW-Authenticate", realm+`, error="insufficient_scope", scope="`+scope+`"`)
			writeErrors(w, r, newError(http.StatusForbidden, codeInsufficientScope,
				"the token does not grant the scope "+scope))
			return
		}
		if limit, wait := a.limits.allow(id.Actor(), id.ClientID); limit != "" {
			if limit == limitRefused {
				// A client past its budget of refused requests is kept
				// waiting for its answer, up to a second: one sending bad
				// bodies in a loop then sends a few a second per
				// connection, at the cost of an idle goroutine, instead of
				// thousands of cheap refusals that still cost their HTTP
				// and token checks.
				tarpit(r.Context(), min(wait, time.Second))
			}
			seconds := strconv.Itoa(int(math.Ceil(wait.Seconds())))
			w.Header().Set("Retry-After", seconds)
			writeErrors(w, r, newError(http.StatusTooManyRequests, codeRateLimited,
				"too many requests for this "+limit+"; retry after "+seconds+" s"))
			return
		}
		if provider, ok := a.rules[id.ClientID]; ok && !admin {
			linked, err := a.links.LinkedProviders(r.Context(), id)
			if err != nil {
				writeError(w, r, err)
				return
			}
			if !slices.Contains(linked, provider) {
				w.Header().Set("WWW-Authenticate", realm)
				writeErrors(w, r, newError(http.StatusUnauthorized, codeMissingLinkedIdentity,
					"Linked identity is needed to access this resource, please check why the user does not have a linked identity"))
				return
			}
		}
		next.ServeHTTP(w, r)
		if rec, ok := w.(*statusRecorder); ok {
			a.limits.answered(id.Actor(), rec.status)
		}
	})
}
