package auth_test

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/userattrs/userattrs/auth"
)

// testIssuer is an OIDC issuer served over HTTP: a discovery document and a
// JWKS holding the public halves of its current keys.
type testIssuer struct {
	srv        *httptest.Server
	mu         sync.Mutex
	keys       []signingKey
	extraKeys  []json.RawMessage // published beside the signing keys
	keyFetches atomic.Int32
	down       atomic.Bool
	maxAge     int // Cache-Control max-age of the key set, when set
}

type signingKey struct {
	alg  jose.SignatureAlgorithm
	kid  string
	priv crypto.Signer
}

func newKey(t testing.TB, alg jose.SignatureAlgorithm, kid string) signingKey {
	t.Helper()
	var priv crypto.Signer
	var err error
	switch alg {
	case jose.RS256, jose.PS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	}
	if err != nil {
		t.Fatal(err)
	}
	return signingKey{alg: alg, kid: kid, priv: priv}
}

func newTestIssuer(t testing.TB, keys ...signingKey) *testIssuer {
	t.Helper()
	is := &testIssuer{keys: keys}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": is.srv.URL, "jwks_uri": is.srv.URL + "/jwks"})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		is.keyFetches.Add(1)
		if is.down.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		is.mu.Lock()
		defer is.mu.Unlock()
		var set struct {
			Keys []json.RawMessage `json:"keys"`
		}
		for _, k := range is.keys {
			b, _ := json.Marshal(jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
			set.Keys = append(set.Keys, b)
		}
		set.Keys = append(set.Keys, is.extraKeys...)
		if is.maxAge > 0 {
			w.Header().Set("Cache-Control", fmt.Sprintf("public, max-age=%d", is.maxAge))
		}
		json.NewEncoder(w).Encode(set)
	})
	is.srv = httptest.NewServer(mux)
	t.Cleanup(is.srv.Close)
	return is
}

func (is *testIssuer) setKeys(keys ...signingKey) {
	is.mu.Lock()
	defer is.mu.Unlock()
	is.keys = keys
}

// sign returns a token with standard claims for this issuer, changed by
// edit.
func (is *testIssuer) sign(t testing.TB, k signingKey, edit func(c map[string]any)) string {
	t.Helper()
	now := time.Now()
	c := map[string]any{
		"iss": is.srv.URL, "sub": "alice", "aud": []string{"userattrs", "account"},
		"azp": "app", "scope": "openid user:attributes:read",
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
	}
	if edit != nil {
		edit(c)
	}
	return signClaims(t, k, c)
}

func signClaims(t testing.TB, k signingKey, claims any) string {
	t.Helper()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: k.alg, Key: jose.JSONWebKey{Key: k.priv, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func b64(v any) string {
	b, _ := json.Marshal(v)
	return base64.RawURLEncoding.EncodeToString(b)
}

func TestJWTAccepts(t *testing.T) {
	keys := []signingKey{
		newKey(t, jose.RS256, "rs"), newKey(t, jose.PS256, "ps"),
		newKey(t, jose.ES256, "es"), newKey(t, jose.EdDSA, "ed"),
	}
	is := newTestIssuer(t, keys...)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{Audience: "userattrs"}})
	for _, k := range keys {
		t.Run(string(k.alg), func(t *testing.T) {
			id, err := v.Verify(context.Background(), is.sign(t, k, nil))
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if id.Subject != "alice" || id.ClientID != "app" || !id.HasScope("user:attributes:read") || id.HasScope("user:attributes:write") {
				t.Fatalf("identity = %+v", id)
			}
		})
	}

	t.Run("client_id and scp array", func(t *testing.T) {
		id, err := v.Verify(context.Background(), is.sign(t, keys[0], func(c map[string]any) {
			delete(c, "azp")
			delete(c, "scope")
			c["client_id"] = "svc"
			c["scp"] = []string{"user:attributes:write"}
			c["aud"] = "userattrs"
		}))
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
		if id.ClientID != "svc" || !slices.Equal(id.Scopes, []string{"user:attributes:write"}) {
			t.Fatalf("identity = %+v", id)
		}
	})

	t.Run("within the leeway", func(t *testing.T) {
		_, err := v.Verify(context.Background(), is.sign(t, keys[0], func(c map[string]any) {
			c["exp"] = time.Now().Add(-10 * time.Second).Unix()
			c["nbf"] = time.Now().Add(10 * time.Second).Unix()
		}))
		if err != nil {
			t.Fatalf("Verify: %v", err)
		}
	})
}

func TestJWTRejects(t *testing.T) {
	rs := newKey(t, jose.RS256, "rs")
	is := newTestIssuer(t, rs)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{Audience: "userattrs"}})
	stranger := newKey(t, jose.RS256, "stranger")
	impostor := signingKey{alg: jose.RS256, kid: "rs", priv: stranger.priv}
	valid := is.sign(t, rs, nil)
	parts := strings.Split(valid, ".")

	pubDER, _ := x509.MarshalPKIXPublicKey(rs.priv.Public())
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hmacSigner, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.HS256, Key: pubPEM},
		(&jose.SignerOptions{}).WithHeader("kid", "rs"))
	hmacToken, _ := jwt.Signed(hmacSigner).Claims(map[string]any{
		"iss": is.srv.URL, "sub": "alice", "aud": "userattrs", "exp": time.Now().Add(time.Hour).Unix()}).Serialize()

	var tampered map[string]any
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	json.Unmarshal(payload, &tampered)
	tampered["sub"] = "mallory"

	cases := []struct {
		name  string
		token string
	}{
		{"alg none", b64(map[string]string{"alg": "none", "typ": "JWT"}) + "." + parts[1] + "."},
		{"HMAC keyed with the public key", hmacToken},
		{"expired", is.sign(t, rs, func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })},
		{"not yet valid", is.sign(t, rs, func(c map[string]any) { c["nbf"] = time.Now().Add(2 * time.Minute).Unix() })},
		{"issued in the future", is.sign(t, rs, func(c map[string]any) { c["iat"] = time.Now().Add(2 * time.Minute).Unix() })},
		{"no expiry", is.sign(t, rs, func(c map[string]any) { delete(c, "exp") })},
		{"wrong issuer", is.sign(t, rs, func(c map[string]any) { c["iss"] = "https://evil.example" })},
		{"wrong audience", is.sign(t, rs, func(c map[string]any) { c["aud"] = "someone-else" })},
		{"no subject, no client", is.sign(t, rs, func(c map[string]any) { delete(c, "sub"); delete(c, "azp") })},
		{"unknown key", is.sign(t, stranger, nil)},
		{"known kid, other key", is.sign(t, impostor, nil)},
		{"tampered payload", parts[0] + "." + b64(tampered) + "." + parts[2]},
		{"signature stripped", parts[0] + "." + parts[1] + "."},
		{"garbage", "not-a-token"},
		{"empty", ""},
		{"two dots of nothing", ".."},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			if !errors.Is(err, auth.ErrInvalidToken) {
				t.Fatalf("Verify = %v, want ErrInvalidToken", err)
			}
			if tc.token != "" && strings.Contains(err.Error(), tc.token) {
				t.Fatalf("error quotes the token: %v", err)
			}
		})
	}
}

func TestKeyRotation(t *testing.T) {
	old, next := newKey(t, jose.RS256, "old"), newKey(t, jose.ES256, "new")
	is := newTestIssuer(t, old)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{AnyAudience: true}, MinRefreshInterval: time.Millisecond})
	ctx := context.Background()
	if _, err := v.Verify(ctx, is.sign(t, old, nil)); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	is.setKeys(next)
	time.Sleep(5 * time.Millisecond)
	if _, err := v.Verify(ctx, is.sign(t, next, nil)); err != nil {
		t.Fatalf("token of the new key after rotation: %v", err)
	}
}

// Tokens naming unknown key ids make the verifier fetch the keys again, all
// of them sharing fetches no more often than MinRefreshInterval; a token of
// a key the issuer has just published, right after such a fetch, waits for
// the next one instead of being refused.
func TestUnknownKeyRefresh(t *testing.T) {
	k, next := newKey(t, jose.EdDSA, "k"), newKey(t, jose.RS256, "next")
	is := newTestIssuer(t, k)
	const interval = 300 * time.Millisecond
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{AnyAudience: true}, MinRefreshInterval: interval})
	ctx := context.Background()
	if _, err := v.Verify(ctx, is.sign(t, k, nil)); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var wg sync.WaitGroup
	for i := range 50 {
		forged := is.sign(t, newKey(t, jose.EdDSA, "forged"+string(rune('a'+i%26))), nil)
		wg.Go(func() {
			if _, err := v.Verify(ctx, forged); !errors.Is(err, auth.ErrInvalidToken) {
				t.Errorf("forged kid: %v", err)
			}
		})
	}
	wg.Wait()
	if n, most := is.keyFetches.Load(), 2+int32(time.Since(start)/interval); n > most {
		t.Fatalf("keys fetched %d times in %s, want at most %d", n, time.Since(start), most)
	}

	// Rotation right after a forged key id made the verifier fetch.
	v.Verify(ctx, is.sign(t, newKey(t, jose.EdDSA, "forged-again"), nil))
	is.setKeys(k, next)
	if _, err := v.Verify(ctx, is.sign(t, next, nil)); err != nil {
		t.Fatalf("a token of a key published right after a fetch: %v", err)
	}
	// A known key never waits.
	before := time.Now()
	for range 20 {
		if _, err := v.Verify(ctx, is.sign(t, k, nil)); err != nil {
			t.Fatal(err)
		}
	}
	if d := time.Since(before); d > interval {
		t.Fatalf("tokens of known keys took %s", d)
	}
}

func TestIssuerDown(t *testing.T) {
	k := newKey(t, jose.RS256, "k")
	is := newTestIssuer(t, k)
	is.down.Store(true)
	v := auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL, Rules: auth.Rules{AnyAudience: true}})
	ctx := context.Background()
	if _, err := v.Verify(ctx, is.sign(t, k, nil)); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Verify with the issuer down: %v, want ErrUnavailable", err)
	}
	if err := v.Ready(ctx); !errors.Is(err, auth.ErrUnavailable) {
		t.Fatalf("Ready with the issuer down: %v", err)
	}
	is.down.Store(false)
	time.Sleep(1100 * time.Millisecond) // past the back-off while no keys are loaded
	if _, err := v.Verify(ctx, is.sign(t, k, nil)); err != nil {
		t.Fatalf("Verify after the issuer is back: %v", err)
	}
}

func TestDevKey(t *testing.T) {
	dir := t.TempDir()
	k, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := k.Sign(auth.TokenRequest{Subject: "bob", ClientID: "cli", Scopes: []string{"a", "b"}, TTL: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	again, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	id, err := again.Verifier().Verify(context.Background(), tok)
	if err != nil {
		t.Fatalf("a token of the stored key: %v", err)
	}
	if id.Subject != "bob" || id.ClientID != "cli" || !id.HasScope("b") {
		t.Fatalf("identity = %+v", id)
	}
	other, _ := auth.LoadOrCreateDevKey(t.TempDir())
	if _, err := other.Verifier().Verify(context.Background(), tok); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("a token of another dev key: %v", err)
	}
	expired, _ := k.Sign(auth.TokenRequest{Subject: "bob", TTL: -time.Hour})
	if _, err := k.Verifier().Verify(context.Background(), expired); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("expired dev token: %v", err)
	}
}
