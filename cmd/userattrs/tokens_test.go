package main

import (
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/internal/oidctest"
)

const readWrite = "user:attributes:read user:attributes:write"

// startOnProvider runs the service against oidc-provider: JWTs verified
// locally, other tokens introspected, both for this API's audience.
func startOnProvider(t *testing.T, op *oidctest.Provider, extra ...string) *process {
	t.Helper()
	args := append([]string{"--store", "memory:", "--oidc-issuer", op.URL, "--oidc-audience", oidctest.API,
		"--introspection-url", op.IntrospectionURL(), "--introspection-client-id", oidctest.IntrospectionClient,
		"--introspection-cache-ttl", "0"}, extra...)
	return startServe(t, t.TempDir(), []string{"USERATTRS_INTROSPECTION_CLIENT_SECRET=" + oidctest.IntrospectionSecret}, args...)
}

// wantStatus GETs the attributes with tok and wants status, and for a 401
// an invalid-token error.
func wantStatus(t *testing.T, p *process, what, tok string, status int) {
	t.Helper()
	got, body := call(t, "GET", p.url+"/user/2024-2/attributes", tok, "")
	if got != status || (status == 401 && !strings.Contains(body, "invalid-token")) {
		t.Errorf("%s: %d %s, want %d", what, got, body, status)
	}
}

// Against a real OpenID Provider that no one here wrote: only access
// tokens for this API get in, on the JWT and the introspection path alike.
func TestTokensOfARealProvider(t *testing.T) {
	rs, ed := oidctest.SigningKey(t, jose.RS256, "rs"), oidctest.SigningKey(t, jose.EdDSA, "ed")
	// The key set also holds an encryption key, which verifiers must skip.
	op := oidctest.Start(t, rs, oidctest.SigningKey(t, jose.ES256, "es"), ed, oidctest.EncryptionKey(t, "enc"))
	p := startOnProvider(t, op)
	if status, _ := call(t, "GET", p.url+"/health/readiness", "", ""); status != 200 {
		t.Fatalf("readiness with a key set holding an encryption key: %d\n%s", status, p.logs.String())
	}

	jwtTokens := op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite})
	opaque := op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite, Opaque: true})
	wantStatus(t, p, "a JWT access token", jwtTokens.Access, 200)
	for _, alg := range []string{"ES256", "EdDSA"} {
		wantStatus(t, p, alg+" access token", op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite, Alg: alg}).Access, 200)
	}
	wantStatus(t, p, "an opaque access token", opaque.Access, 200)
	if status, _ := call(t, "PUT", p.url+"/user/2024-2/attributes", opaque.Access, `{"a":"1"}`); status != 204 {
		t.Errorf("PUT with an opaque access token: %d", status)
	}

	wantStatus(t, p, "a refresh token", opaque.Refresh, 401)
	if status, _ := call(t, "PUT", p.url+"/user/2024-2/attributes", opaque.Refresh, `{"a":"2"}`); status != 401 {
		t.Errorf("PUT with a refresh token: %d", status)
	}
	wantStatus(t, p, "an ID token", jwtTokens.ID, 401)
	other := op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite, Resource: oidctest.OtherAPI, Opaque: true})
	wantStatus(t, p, "an opaque token for another API", other.Access, 401)
	otherJWT := op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite, Resource: oidctest.OtherAPI})
	wantStatus(t, p, "a JWT for another API", otherJWT.Access, 401)
	wantStatus(t, p, "the client's own token", op.ClientToken(t, readWrite), 401)
	if _, body := call(t, "GET", p.url+"/user/2024-2/attributes", opaque.Access, ""); body != `{"a":"1"}` {
		t.Errorf("a refused token changed the attributes: %s", body)
	}

	// Introspection alone: a JWT, which the provider does not introspect,
	// is 401, not an endless 503.
	only := startServe(t, t.TempDir(), []string{"USERATTRS_INTROSPECTION_CLIENT_SECRET=" + oidctest.IntrospectionSecret},
		"--store", "memory:", "--oidc-audience", oidctest.API, "--introspection-url", op.IntrospectionURL(),
		"--introspection-client-id", oidctest.IntrospectionClient)
	wantStatus(t, only, "a JWT in introspection-only mode", jwtTokens.Access, 401)
	wantStatus(t, only, "an opaque token in introspection-only mode", opaque.Access, 200)
}

// Rotation: a token of a key the issuer has just published is accepted
// even right after a forged key id made the service fetch the keys; a key
// the issuer drops stops working within --oidc-keys-max-age, cached
// verifications included.
func TestKeyRotationOfARealProvider(t *testing.T) {
	old, next := oidctest.SigningKey(t, jose.RS256, "old"), oidctest.SigningKey(t, jose.RS256, "next")
	op := oidctest.Start(t, old)
	p := startOnProvider(t, op, "--oidc-keys-max-age", "2s")
	oldToken := op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite}).Access
	wantStatus(t, p, "a token of the first key", oldToken, 200)

	// Anyone can send a token with a key id the service does not know.
	forged := oidctest.Start(t, oidctest.SigningKey(t, jose.RS256, "forged"))
	wantStatus(t, p, "a forged key id", forged.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite}).Access, 401)

	// The issuer publishes a new key first, and signs with it at once.
	op.Restart(t, next, old)
	wantStatus(t, p, "a token of the key just published", op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite}).Access, 200)

	// The issuer drops the old key.
	op.Restart(t, next)
	dropped := time.Now()
	for {
		status, _ := call(t, "GET", p.url+"/user/2024-2/attributes", oldToken, "")
		if status == 401 {
			break
		}
		if time.Since(dropped) > 6*time.Second {
			t.Fatalf("a token of a dropped key still answers %d %s later", status, time.Since(dropped))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("a token of the dropped key refused %s after the issuer dropped it (--oidc-keys-max-age 2s)", time.Since(dropped).Round(time.Millisecond))
}

// Configuration mistakes are said as such: introspection credentials the
// endpoint refuses, an issuer URL that is not the issuer's.
func TestTokenMisconfiguration(t *testing.T) {
	op := oidctest.Start(t, oidctest.SigningKey(t, jose.RS256, "rs"))
	opaque := op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite, Opaque: true})

	badSecret := startServe(t, t.TempDir(), []string{"USERATTRS_INTROSPECTION_CLIENT_SECRET=wrong"},
		"--store", "memory:", "--oidc-audience", oidctest.API, "--introspection-url", op.IntrospectionURL(),
		"--introspection-client-id", oidctest.IntrospectionClient)
	if status, _ := call(t, "GET", badSecret.url+"/health/readiness", "", ""); status != 503 {
		t.Errorf("readiness with refused introspection credentials: %d", status)
	}
	if status, body := call(t, "GET", badSecret.url+"/user/2024-2/attributes", opaque.Access, ""); status != 501 || strings.Contains(body, "wrong") {
		t.Errorf("a request with refused introspection credentials: %d %s", status, body)
	}
	waitForLog(t, badSecret, "refuses the service's client credentials")

	slash := startServe(t, t.TempDir(), nil, "--store", "memory:", "--oidc-issuer", op.URL+"/", "--oidc-audience", oidctest.API)
	jwt := op.UserTokens(t, oidctest.TokenRequest{Subject: "alice", Scope: readWrite}).Access
	if status, _ := call(t, "GET", slash.url+"/user/2024-2/attributes", jwt, ""); status != 501 {
		t.Errorf("a request with a mismatched issuer: %d", status)
	}
	if status, _ := call(t, "GET", slash.url+"/health/readiness", "", ""); status != 503 {
		t.Errorf("readiness with a mismatched issuer: %d", status)
	}
	waitForLog(t, slash, "is not the issuer")
}

// waitForLog waits for the process to log text; logs are flushed every
// 100 ms.
func waitForLog(t *testing.T, p *process, text string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(p.logs.String(), text) {
		if time.Now().After(deadline) {
			t.Fatalf("the log does not say %q:\n%s", text, p.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Keycloak's own tokens: access tokens get in on both paths; refresh and
// ID tokens do not.
func TestKeycloakTokenKinds(t *testing.T) {
	kc := kctest.Shared(t)
	u := kc.NewUser(t)
	access, refresh, id := kc.Tokens(t, u, "user:attributes:read", "user:attributes:write")
	jwtPath := startServe(t, t.TempDir(), nil, "--store", "memory:", "--oidc-issuer", kc.Issuer(), "--oidc-audience", kc.Audience)
	introspection := startServe(t, t.TempDir(), []string{"USERATTRS_INTROSPECTION_CLIENT_SECRET=" + kc.ClientSecret},
		"--store", "memory:", "--oidc-audience", kc.Audience, "--introspection-cache-ttl", "0",
		"--introspection-url", kc.Issuer()+"/protocol/openid-connect/token/introspect", "--introspection-client-id", kc.ClientID)
	for _, p := range []*process{jwtPath, introspection} {
		wantStatus(t, p, "Keycloak's access token", access, 200)
		wantStatus(t, p, "Keycloak's refresh token", refresh, 401)
		wantStatus(t, p, "Keycloak's ID token", id, 401)
	}
}
