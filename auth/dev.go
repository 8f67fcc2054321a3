package auth

import (
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// DevIssuer is the issuer of development tokens. It is not a URL on
// purpose: no real issuer can have it.
const DevIssuer = "userattrs-dev"

// DevKeyFile is the name of the development signing key in the data
// directory.
const DevKeyFile = "dev-signing-key.pem"

// DevKey is the development signing key: `serve --dev` trusts the tokens it
// signs and `token` signs them.
type DevKey struct {
	private ed25519.PrivateKey
	kid     string
}

// LoadOrCreateDevKey reads the development key from dir, creating it (once,
// readable by the owner only) if it does not exist.
func LoadOrCreateDevKey(dir string) (*DevKey, error) {
	key, err := LoadDevKey(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return createDevKey(dir, filepath.Join(dir, DevKeyFile))
	}
	return key, err
}

// LoadDevKey reads the development key from dir; an error wrapping
// fs.ErrNotExist says there is none.
func LoadDevKey(dir string) (*DevKey, error) {
	path := filepath.Join(dir, DevKeyFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read development key: %w", err)
	}
	block, _ := pem.Decode(raw)
	if block == nil {
		return nil, fmt.Errorf("development key %s: not PEM", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("development key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("development key %s: not an Ed25519 key", path)
	}
	return newDevKey(priv)
}

func createDevKey(dir, path string) (*DevKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	// O_EXCL: when two processes race to create the key, one wins and the
	// other reads the winner's key instead of overwriting it.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return LoadOrCreateDevKey(dir)
	}
	if err != nil {
		return nil, fmt.Errorf("create development key: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: der}); err != nil {
		f.Close()
		return nil, fmt.Errorf("write development key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("write development key: %w", err)
	}
	return newDevKey(priv)
}

func newDevKey(priv ed25519.PrivateKey) (*DevKey, error) {
	pub := jose.JSONWebKey{Key: priv.Public(), Algorithm: string(jose.EdDSA), Use: "sig"}
	thumb, err := pub.Thumbprint(cryptoSHA256)
	if err != nil {
		return nil, err
	}
	return &DevKey{private: priv, kid: base64.RawURLEncoding.EncodeToString(thumb)}, nil
}

// PublicKey is the key that checks the development tokens' signatures.
func (k *DevKey) PublicKey() ed25519.PublicKey { return k.private.Public().(ed25519.PublicKey) }

// Verifier returns a verifier that trusts the tokens this key signs.
func (k *DevKey) Verifier() *JWTVerifier {
	return &JWTVerifier{
		issuer: DevIssuer,
		rules:  Rules{AnyAudience: true},
		now:    time.Now,
		source: staticKeys{{Key: k.private.Public(), KeyID: k.kid, Algorithm: string(jose.EdDSA), Use: "sig"}},
	}
}

// TokenRequest describes a development token.
type TokenRequest struct {
	Subject  string
	ClientID string
	Scopes   []string
	TTL      time.Duration
}

// Sign returns a signed development access token.
func (k *DevKey) Sign(req TokenRequest) (string, error) {
	if req.Subject == "" {
		return "", errors.New("a token needs a subject")
	}
	signer, err := jose.NewSigner(
		jose.SigningKey{Algorithm: jose.EdDSA, Key: jose.JSONWebKey{Key: k.private, KeyID: k.kid}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		return "", err
	}
	now := time.Now()
	claims := jwt.Claims{
		Issuer:   DevIssuer,
		Subject:  req.Subject,
		IssuedAt: jwt.NewNumericDate(now),
		Expiry:   jwt.NewNumericDate(now.Add(req.TTL)),
	}
	extra := map[string]any{"scope": strings.Join(req.Scopes, " ")}
	if req.ClientID != "" {
		extra["azp"] = req.ClientID
	}
	return jwt.Signed(signer).Claims(claims).Claims(extra).Serialize()
}

const cryptoSHA256 = crypto.SHA256
