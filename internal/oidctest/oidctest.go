// Package oidctest gives tests a second real OpenID Provider beside
// Keycloak: oidc-provider (panva's certified implementation) from the npm
// registry, run by Node.js on a loopback port with the keys a test
// chooses, and restarted with other keys to rotate them.
package oidctest

import (
	"bufio"
	"bytes"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"

	"github.com/userattrs/userattrs/internal/testutil"
)

// The resource servers (audiences) the provider knows. Both use the same
// scope names.
const (
	API      = "https://userattrs.test/api"
	OtherAPI = "https://other.test/api"
)

// The clients: the app users sign in to, and the one this service
// introspects as.
const (
	AppClient           = "app"
	IntrospectionClient = "userattrs"
	IntrospectionSecret = "introspection-secret"
)

// Provider is a running oidc-provider.
type Provider struct {
	URL  string // the issuer
	port int
	// public is the issuer's address when clients reach it through a
	// proxy; empty otherwise.
	public string
	dir    string
	cmd    *exec.Cmd
	done   chan struct{}
}

// Key is a private key the provider publishes: signing keys sign in the
// order given (the first of an algorithm), encryption keys are only
// published.
type Key json.RawMessage

// SigningKey returns a new private signing key for alg (RS256, ES256 or
// EdDSA) with key id kid.
func SigningKey(tb testing.TB, alg jose.SignatureAlgorithm, kid string) Key {
	tb.Helper()
	var priv any
	var err error
	switch alg {
	case jose.RS256:
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case jose.ES256:
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case jose.EdDSA:
		_, priv, err = ed25519.GenerateKey(rand.Reader)
	default:
		tb.Fatalf("oidctest: no key for %s", alg)
	}
	if err != nil {
		tb.Fatal(err)
	}
	b, err := json.Marshal(jose.JSONWebKey{Key: priv, KeyID: kid, Algorithm: string(alg), Use: "sig"})
	if err != nil {
		tb.Fatal(err)
	}
	return Key(b)
}

// EncryptionKey returns a new private X25519 key for encryption, a kind of
// key verifiers of signatures must skip.
func EncryptionKey(tb testing.TB, kid string) Key {
	tb.Helper()
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	enc := base64.RawURLEncoding.EncodeToString
	b, _ := json.Marshal(map[string]string{"kty": "OKP", "crv": "X25519", "use": "enc", "alg": "ECDH-ES", "kid": kid,
		"d": enc(priv.Bytes()), "x": enc(priv.PublicKey().Bytes())})
	return Key(b)
}

// Start runs the provider with keys on a free loopback port until the test
// ends. Without Node.js or npm the test is skipped, except under CI=true,
// where it fails.
func Start(tb testing.TB, keys ...Key) *Provider {
	tb.Helper()
	return StartBehind(tb, nil, keys...)
}

// StartBehind is Start for a provider that clients reach through a proxy:
// proxy gets the provider's own address (host:port) and returns the
// proxy's, which becomes the issuer URL. A nil proxy is Start.
func StartBehind(tb testing.TB, proxy func(upstream string) string, keys ...Key) *Provider {
	tb.Helper()
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "true" {
				tb.Fatalf("oidctest: %s is needed to run oidc-provider", tool)
			}
			tb.Skipf("oidctest: %s is needed to run oidc-provider", tool)
		}
	}
	root, err := testutil.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr bytes.Buffer
	install := exec.Command(filepath.Join(root, "scripts", "oidc-provider.sh"))
	install.Stderr = &stderr
	out, err := install.Output()
	if err != nil {
		tb.Fatalf("oidctest: oidc-provider.sh: %v\n%s", err, stderr.String())
	}
	port, err := testutil.FreePort()
	if err != nil {
		tb.Fatal(err)
	}
	p := &Provider{URL: fmt.Sprintf("http://127.0.0.1:%d", port), port: port, dir: strings.TrimSpace(string(out))}
	if proxy != nil {
		p.public = "http://" + proxy(fmt.Sprintf("127.0.0.1:%d", port))
		p.URL = p.public
	}
	p.start(tb, keys)
	tb.Cleanup(p.stop)
	return p
}

// Restart stops the provider and starts it again on the same port with
// other keys: its tokens of before are forgotten.
func (p *Provider) Restart(tb testing.TB, keys ...Key) {
	tb.Helper()
	p.stop()
	p.start(tb, keys)
}

func (p *Provider) start(tb testing.TB, keys []Key) {
	tb.Helper()
	raw := make([]json.RawMessage, len(keys))
	for i, k := range keys {
		raw[i] = json.RawMessage(k)
	}
	set, _ := json.Marshal(raw)
	cmd := exec.Command("node", "server.mjs")
	cmd.Dir = p.dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", p.port), "KEYS="+string(set),
		"INTROSPECTION_SECRET="+IntrospectionSecret, "ISSUER="+p.public)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var logs bytes.Buffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	p.cmd, p.done = cmd, make(chan struct{})
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), "ready ") {
				ready <- true
			}
		}
		cmd.Wait()
		close(p.done)
		ready <- false
	}()
	select {
	case ok := <-ready:
		if !ok {
			tb.Fatalf("oidctest: oidc-provider exited\n%s", logs.String())
		}
	case <-time.After(30 * time.Second):
		tb.Fatalf("oidctest: oidc-provider did not start\n%s", logs.String())
	}
}

func (p *Provider) stop() {
	if p.cmd != nil && p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		<-p.done
	}
}

// IntrospectionURL is the provider's RFC 7662 endpoint.
func (p *Provider) IntrospectionURL() string { return p.URL + "/token/introspection" }

// Tokens are what a user's sign-in gives an app.
type Tokens struct {
	Access, Refresh, ID string
}

// TokenRequest describes the tokens of a user to issue.
type TokenRequest struct {
	Subject  string
	Scope    string
	Resource string // API when empty
	Opaque   bool   // an opaque access token instead of a JWT
	Alg      string // of a JWT access token; RS256 when empty
}

// UserTokens issues tokens for a user as if they had signed in to the app.
func (p *Provider) UserTokens(tb testing.TB, r TokenRequest) Tokens {
	tb.Helper()
	form := url.Values{"grant_type": {"urn:userattrs:test:tokens"}, "sub": {r.Subject}, "scope": {r.Scope}}
	if r.Resource != "" {
		form.Set("resource", r.Resource)
	}
	if r.Opaque {
		form.Set("format", "opaque")
	}
	if r.Alg != "" {
		form.Set("alg", r.Alg)
	}
	var out struct {
		Access  string `json:"access_token"`
		Refresh string `json:"refresh_token"`
		ID      string `json:"id_token"`
	}
	p.token(tb, form, &out)
	return Tokens{Access: out.Access, Refresh: out.Refresh, ID: out.ID}
}

// ClientToken issues the app a JWT of its own, by client credentials: its
// subject is the client.
func (p *Provider) ClientToken(tb testing.TB, scope string) string {
	tb.Helper()
	form := url.Values{"grant_type": {"client_credentials"}, "scope": {scope}, "resource": {API}}
	var out struct {
		Access string `json:"access_token"`
	}
	p.token(tb, form, &out)
	return out.Access
}

func (p *Provider) token(tb testing.TB, form url.Values, out any) {
	tb.Helper()
	req, _ := http.NewRequest("POST", p.URL+"/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(AppClient, "app-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("oidctest: token: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, out) != nil {
		tb.Fatalf("oidctest: token: %d %s", resp.StatusCode, body)
	}
}
