package auth_test

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/userattrs/userattrs/auth"
)

// signRaw signs payload as it is, with the typ header given ("" for none).
func signRaw(t testing.TB, k signingKey, typ string, payload string) string {
	t.Helper()
	opts := &jose.SignerOptions{}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}}, opts)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign([]byte(payload))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// payloadOf is the standard claims of is as JSON, with extra members
// spliced in verbatim; the scope is the read scope unless extra has one.
func payloadOf(is *testIssuer, extra string) string {
	now := time.Now().Unix()
	c := map[string]any{"iss": is.srv.URL, "aud": "userattrs", "azp": "app", "iat": now, "exp": now + 3600}
	if !strings.Contains(extra, `"scope"`) {
		c["scope"] = "user:attributes:read"
	}
	b, _ := json.Marshal(c)
	return strings.TrimSuffix(string(b), "}") + extra + "}"
}

// serviceAccount in a case's reason: accepted as a service account's token.
const serviceAccount = "(service account)"

// The service-account claim counts only as the JSON boolean true: a
// string, which a user-attribute mapper would put there from an attribute
// a user may set, makes no service account.
func TestServiceAccountClaimIsBoolean(t *testing.T) {
	rs := newKey(t, jose.RS256, "rs")
	is := newTestIssuer(t, rs)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{Audience: "userattrs", ServiceAccountClaim: "sa"}})
	for claim, want := range map[string]bool{`true`: true, `"true"`: false, `1`: false, `false`: false, `["true"]`: false} {
		id, err := v.Verify(context.Background(), signRaw(t, rs, "JWT", payloadOf(is, `,"sub":"alice","sa":`+claim)))
		if err != nil || id.ServiceAccount != want {
			t.Errorf("claim %s: service account %v, %v; want %v", claim, id.ServiceAccount, err, want)
		}
	}
}

// Only access tokens meant for this API, for a user whom every store can
// keep or for a service account, get in; what is wrong is named right.
func TestTokenRules(t *testing.T) {
	rs := newKey(t, jose.RS256, "rs")
	is := newTestIssuer(t, rs)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{Audience: "userattrs"}})
	cases := []struct {
		name   string
		typ    string
		extra  string
		reason string // "" when accepted
	}{
		{"Keycloak's JWT", "JWT", `,"sub":"alice","typ":"Bearer"`, ""},
		{"RFC 9068 at+jwt", "at+jwt", `,"sub":"alice"`, ""},
		{"application/at+jwt", "application/at+jwt", `,"sub":"alice"`, ""},
		{"logout token", "logout+jwt", `,"sub":"alice"`, "not an access token"},
		{"no typ", "", `,"sub":"alice"`, "not an access token"},
		{"Keycloak ID token", "JWT", `,"sub":"alice","typ":"ID"`, "not an access token"},
		{"Keycloak refresh token", "JWT", `,"sub":"alice","typ":"Refresh"`, "not an access token"},
		{"numeric sub", "JWT", `,"sub":42`, "invalid claims"},
		{"string exp", "JWT", `,"sub":"alice","exp":"soon"`, "invalid claims"},
		{"numbers in aud", "JWT", `,"sub":"alice","aud":[1,2]`, "invalid claims"},
		{"duplicate claim", "JWT", `,"sub":"alice","sub":"mallory"`, "invalid claims"},
		{"invalid UTF-8 in sub", "JWT", ",\"sub\":\"a\xffb\"", "invalid claims"},
		{"lone surrogate in sub", "JWT", `,"sub":"a\ud800b"`, "invalid claims"},
		{"NUL in sub", "JWT", `,"sub":"a\u0000b"`, "a subject with control characters"},
		{"sub of 256 bytes", "JWT", `,"sub":"` + strings.Repeat("s", 256) + `"`, "a subject longer than 255 bytes"},
		{"sub of 255 bytes", "JWT", `,"sub":"` + strings.Repeat("s", 255) + `"`, ""},
		{"a client's own token", "JWT", `,"sub":"app"`, serviceAccount},
		{"no subject", "JWT", ``, serviceAccount},
		{"empty scope hides no scp", "JWT", `,"sub":"alice","scope":"","scp":["user:attributes:read"]`, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			id, err := v.Verify(context.Background(), signRaw(t, rs, tc.typ, payloadOf(is, tc.extra)))
			if tc.reason == "" || tc.reason == serviceAccount {
				if err != nil || !id.HasScope("user:attributes:read") || id.ServiceAccount != (tc.reason == serviceAccount) {
					t.Fatalf("Verify = %+v, %v", id, err)
				}
				return
			}
			var invalid *auth.InvalidTokenError
			if !errors.As(err, &invalid) || invalid.Reason != tc.reason {
				t.Fatalf("Verify = %v, want the reason %q", err, tc.reason)
			}
		})
	}
}

// RFC 9864's fully specified Ed25519 verifies beside EdDSA.
func TestEd25519Algorithm(t *testing.T) {
	ed := newKey(t, jose.EdDSA, "ed")
	is := newTestIssuer(t, ed)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{Audience: "userattrs"}})
	payload := payloadOf(is, `,"sub":"alice"`)
	header := b64(map[string]string{"alg": "Ed25519", "typ": "at+jwt", "kid": "ed"})
	body := b64raw([]byte(payload))
	sig := ed25519.Sign(ed.priv.(ed25519.PrivateKey), []byte(header+"."+body))
	tok := header + "." + body + "." + b64raw(sig)
	if _, err := v.Verify(context.Background(), tok); err != nil {
		t.Fatalf("an Ed25519 token: %v", err)
	}
	tampered := header + "." + b64raw([]byte(payloadOf(is, `,"sub":"mallory"`))) + "." + b64raw(sig)
	if _, err := v.Verify(context.Background(), tampered); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("a tampered Ed25519 token: %v", err)
	}
}

// A key set with keys the service cannot use still verifies with the keys
// it can (RFC 7517, section 5).
func TestKeySetWithUnusableKeys(t *testing.T) {
	rs := newKey(t, jose.RS256, "rs")
	is := newTestIssuer(t, rs)
	is.extraKeys = []json.RawMessage{
		json.RawMessage(`{"kty":"OKP","crv":"X25519","use":"enc","kid":"enc","x":"hSDwCYkwp1R0i33ctD73Wg2_Og0mOBr066SpjqqbTmo"}`),
		json.RawMessage(`{"kty":"XYZ","kid":"future","use":"sig"}`),
		json.RawMessage(`{"kty":"EC","crv":"P-521-ish","kid":"odd","x":"AA","y":"AA"}`),
	}
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{Audience: "userattrs"}})
	if err := v.Ready(context.Background()); err != nil {
		t.Fatalf("Ready: %v", err)
	}
	if _, err := v.Verify(context.Background(), is.sign(t, rs, nil)); err != nil {
		t.Fatalf("Verify: %v", err)
	}
}

// A key the issuer drops stops verifying within the key set's max age,
// also for tokens the verified-token cache already knows.
func TestRemovedKeyStopsVerifying(t *testing.T) {
	stay, retired := newKey(t, jose.ES256, "stay"), newKey(t, jose.RS256, "retired")
	is := newTestIssuer(t, stay, retired)
	is.maxAge = 1
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{Audience: "userattrs"},
		MinRefreshInterval: 10 * time.Millisecond, MinKeyAge: 200 * time.Millisecond})
	cached := auth.NewCache(v, auth.CacheConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go v.Run(ctx, func(err error) { t.Errorf("refresh: %v", err) })

	old := is.sign(t, retired, nil)
	if _, err := cached.Verify(ctx, old); err != nil {
		t.Fatal(err)
	}
	is.setKeys(stay)
	removed := time.Now()
	for {
		_, err := cached.Verify(ctx, old)
		if errors.Is(err, auth.ErrInvalidToken) {
			break
		}
		if time.Since(removed) > 3*time.Second {
			t.Fatalf("a token of a removed key still verifies %s later: %v", time.Since(removed), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("refused %s after the issuer dropped its key (max-age 1s)", time.Since(removed).Round(time.Millisecond))
	if _, err := cached.Verify(ctx, is.sign(t, stay, nil)); err != nil {
		t.Fatalf("a token of a remaining key: %v", err)
	}
}

// An issuer URL that is not the one the discovery document names is a
// configuration mistake, said as one, at readiness and on use.
func TestIssuerMismatch(t *testing.T) {
	rs := newKey(t, jose.RS256, "rs")
	is := newTestIssuer(t, rs)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL + "/", Rules: auth.Rules{Audience: "userattrs"}})
	_, err := v.Verify(context.Background(), is.sign(t, rs, nil))
	if !errors.Is(err, auth.ErrMisconfigured) || errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Verify: %v", err)
	}
	if err := v.Ready(context.Background()); !errors.Is(err, auth.ErrMisconfigured) || !strings.Contains(err.Error(), is.srv.URL+"/") {
		t.Fatalf("Ready: %v", err)
	}
}

func b64raw(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// FuzzTokenClaims signs whatever claims the fuzzer writes, with a key the
// verifier trusts, and checks that an accepted token is an access token
// for this API with a subject every store can keep; a token that is not a
// signed JWT of that key is never accepted.
func FuzzTokenClaims(f *testing.F) {
	ed := newKey(f, jose.EdDSA, "ed")
	is := newTestIssuer(f, ed)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{Audience: "userattrs"}})
	for _, tc := range [][2]string{
		{"JWT", `,"sub":"alice","typ":"Bearer"`}, {"at+jwt", `,"sub":"alice"`}, {"JWT", `,"sub":"alice","typ":"Refresh"`},
		{"JWT", `,"sub":"a\u0000b"`}, {"JWT", `,"sub":"alice","aud":["x","userattrs"]`}, {"JWT", `,"sub":"alice","exp":1}`},
		{"JWT", `,"sub":"app"`}, {"JWT", `,"sub":"alice","scp":["a"],"scope":""`}, {"", `,"sub":"alice"`},
	} {
		f.Add(tc[0], tc[1], "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhbGljZSJ9.")
	}
	f.Fuzz(func(t *testing.T, typ, extra, raw string) {
		if id, err := v.Verify(context.Background(), raw); err == nil {
			t.Fatalf("an unsigned token %q was accepted as %+v", raw, id)
		}
		payload := payloadOf(is, extra)
		id, err := v.Verify(context.Background(), signRaw(t, ed, typ, payload))
		if err != nil {
			var invalid *auth.InvalidTokenError
			if !errors.As(err, &invalid) {
				t.Fatalf("claims %q: %v, not an invalid-token error", payload, err)
			}
			return
		}
		switch {
		case !json.Valid([]byte(payload)):
			t.Fatalf("claims that are not JSON were accepted: %q", payload)
		case !slices.Contains([]string{"jwt", "at+jwt", "application/at+jwt"}, strings.ToLower(typ)):
			t.Fatalf("a token of type %q was accepted", typ)
		case len(id.Subject) > 255 || !utf8.ValidString(id.Subject) || strings.ContainsFunc(id.Subject, unicode.IsControl):
			t.Fatalf("claims %q: accepted the subject %q", payload, id.Subject)
		case (id.Subject == "" || id.Subject == id.ClientID) != id.ServiceAccount:
			t.Fatalf("claims %q: a client's own token is a service account's, nothing else: %+v", payload, id)
		case id.ServiceAccount && id.ClientID == "":
			t.Fatalf("claims %q: a service account without a client", payload)
		case !id.Expiry.After(time.Now().Add(-auth.Leeway)):
			t.Fatalf("claims %q: accepted a token that expired at %v", payload, id.Expiry)
		}
	})
}
