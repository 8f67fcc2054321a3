package auth_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/userattrs/userattrs/auth"
)

// introspectionEndpoint answers RFC 7662 requests from a table of tokens,
// checking the client's credentials, and counts the calls.
type introspectionEndpoint struct {
	srv    *httptest.Server
	calls  atomic.Int32
	mu     sync.Mutex
	tokens map[string]map[string]any
	status int
}

func newIntrospectionEndpoint(t *testing.T) *introspectionEndpoint {
	e := &introspectionEndpoint{tokens: map[string]map[string]any{}, status: 200}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.calls.Add(1)
		id, secret, ok := r.BasicAuth()
		if !ok || id != "svc" || secret != "s3cret" || r.PostFormValue("token") == "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		e.mu.Lock()
		defer e.mu.Unlock()
		if e.status != 200 {
			w.WriteHeader(e.status)
			return
		}
		answer, ok := e.tokens[r.PostFormValue("token")]
		if !ok {
			answer = map[string]any{"active": false}
		}
		json.NewEncoder(w).Encode(answer)
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *introspectionEndpoint) set(token string, answer map[string]any) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens[token] = answer
}

func (e *introspectionEndpoint) introspector(ttl time.Duration) auth.Verifier {
	return auth.NewIntrospector(auth.IntrospectionConfig{URL: e.srv.URL, ClientID: "svc", ClientSecret: "s3cret",
		CacheTTL: ttl, Rules: auth.Rules{Audience: "userattrs", LinkedClaim: "linked"}}).Cached()
}

func active(exp time.Time) map[string]any {
	return map[string]any{"active": true, "sub": "alice", "client_id": "app", "scope": "user:attributes:read",
		"exp": exp.Unix(), "linked": []string{"partner"}, "aud": "userattrs", "token_type": "Bearer"}
}

func TestIntrospection(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	ctx := context.Background()
	e.set("opaque-1", active(time.Now().Add(time.Hour)))
	in := e.introspector(time.Minute)

	id, err := in.Verify(ctx, "opaque-1")
	if err != nil || id.Subject != "alice" || id.ClientID != "app" || !id.HasScope("user:attributes:read") ||
		len(id.LinkedProviders) != 1 || id.LinkedProviders[0] != "partner" {
		t.Fatalf("active token: %+v %v", id, err)
	}
	in.Verify(ctx, "opaque-1")
	if n := e.calls.Load(); n != 1 {
		t.Fatalf("%d introspections for one token within the cache TTL", n)
	}

	cases := map[string]map[string]any{
		"inactive":   {"active": false},
		"expired":    active(time.Now().Add(-time.Hour)),
		"no subject": {"active": true, "exp": time.Now().Add(time.Hour).Unix()},
		"no expiry":  {"active": true, "sub": "alice"},
	}
	for name, answer := range cases {
		e.set(name, answer)
		if _, err := in.Verify(ctx, name); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}
}

// An answer is never reused past the token's expiry, nor past the TTL.
func TestIntrospectionCacheBounds(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	ctx := context.Background()
	e.set("short", active(time.Now().Add(1500*time.Millisecond)))
	in := e.introspector(time.Hour)
	if _, err := in.Verify(ctx, "short"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1600 * time.Millisecond)
	e.set("short", map[string]any{"active": false})
	if _, err := in.Verify(ctx, "short"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("a cached answer outlived its token: %v", err)
	}

	e.set("revoked", active(time.Now().Add(time.Hour)))
	noCache := e.introspector(0)
	noCache.Verify(ctx, "revoked")
	e.set("revoked", map[string]any{"active": false})
	if _, err := noCache.Verify(ctx, "revoked"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("without a cache, a revoked token is still accepted: %v", err)
	}
}

func TestIntrospectionUnavailable(t *testing.T) {
	e := newIntrospectionEndpoint(t)
	e.set("tok", active(time.Now().Add(time.Hour)))
	for status, want := range map[int]error{500: auth.ErrUnavailable, 503: auth.ErrUnavailable,
		401: auth.ErrMisconfigured, 403: auth.ErrMisconfigured} {
		e.status = status
		if _, err := e.introspector(time.Minute).Verify(context.Background(), "tok"); !errors.Is(err, want) {
			t.Errorf("endpoint answering %d: %v, want %v", status, err, want)
		}
	}
	down := auth.NewIntrospector(auth.IntrospectionConfig{URL: "http://127.0.0.1:1/introspect"})
	if _, err := down.Verify(context.Background(), "tok"); !errors.Is(err, auth.ErrUnavailable) {
		t.Errorf("endpoint down: %v", err)
	}
}

// With both schemes, JWTs are verified locally and other tokens introspected.
func TestDispatch(t *testing.T) {
	k := newKey(t, jose.ES256, "k")
	is := newTestIssuer(t, k)
	e := newIntrospectionEndpoint(t)
	e.set("opaque", active(time.Now().Add(time.Hour)))
	d := auth.Dispatch{{Accepts: auth.IsJWT, Verifier: auth.NewOIDC(auth.OIDCConfig{Issuer: is.srv.URL})}, {Verifier: e.introspector(0)}}
	if _, err := d.Verify(context.Background(), is.sign(t, k, nil)); err != nil || e.calls.Load() != 0 {
		t.Fatalf("JWT: %v, %d introspections", err, e.calls.Load())
	}
	if id, err := d.Verify(context.Background(), "opaque"); err != nil || id.Subject != "alice" {
		t.Fatalf("opaque token: %v", err)
	}
	introspectOnly := auth.Dispatch{{Verifier: e.introspector(0)}}
	if _, err := introspectOnly.Verify(context.Background(), is.sign(t, k, nil)); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("a JWT the endpoint does not know: %v", err)
	}
}

// Callers with one token share one introspection, which the first caller
// hanging up does not end for the others.
func TestSharedIntrospectionOutlivesItsFirstCaller(t *testing.T) {
	release := make(chan struct{})
	var calls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		<-release
		json.NewEncoder(w).Encode(active(time.Now().Add(time.Hour)))
	}))
	t.Cleanup(srv.Close)
	in := auth.NewIntrospector(auth.IntrospectionConfig{URL: srv.URL, ClientID: "svc", ClientSecret: "s3cret",
		Rules: auth.Rules{AnyAudience: true}})

	first, hangUp := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() { _, err := in.Verify(first, "shared"); firstErr <- err }()
	for calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	second := make(chan error, 1)
	go func() { _, err := in.Verify(context.Background(), "shared"); second <- err }()
	time.Sleep(20 * time.Millisecond) // the second caller joins the flight
	hangUp()
	if err := <-firstErr; !errors.Is(err, auth.ErrUnavailable) || !errors.Is(err, context.Canceled) {
		t.Fatalf("the caller that hung up: %v", err)
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("the caller that waited: %v", err)
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("%d introspections", n)
	}
}
