package auth_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userattrs/userattrs/auth"
)

// countingVerifier accepts tokens from a table and counts its calls.
type countingVerifier struct {
	calls atomic.Int32
	ids   map[string]auth.Identity
}

func (c *countingVerifier) Verify(_ context.Context, token string) (auth.Identity, error) {
	c.calls.Add(1)
	if id, ok := c.ids[token]; ok {
		return id, nil
	}
	return auth.Identity{}, auth.ErrInvalidToken
}

func TestCache(t *testing.T) {
	ctx := context.Background()
	next := &countingVerifier{ids: map[string]auth.Identity{
		"long":  {Subject: "a", Expiry: time.Now().Add(time.Hour)},
		"short": {Subject: "b", Expiry: time.Now().Add(300 * time.Millisecond)},
	}}
	c := auth.NewCache(next, auth.CacheConfig{MaxEntries: 64})
	for range 3 {
		if id, err := c.Verify(ctx, "long"); err != nil || id.Subject != "a" {
			t.Fatal(id, err)
		}
	}
	if n := next.calls.Load(); n != 1 {
		t.Fatalf("%d verifications of one token, want 1", n)
	}
	for range 2 {
		if _, err := c.Verify(ctx, "forged"); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatal(err)
		}
	}
	if n := next.calls.Load(); n != 3 {
		t.Fatalf("refusals were cached: %d calls", n)
	}
	c.Verify(ctx, "short")
	time.Sleep(400 * time.Millisecond)
	delete(next.ids, "short")
	if _, err := c.Verify(ctx, "short"); !errors.Is(err, auth.ErrInvalidToken) {
		t.Fatalf("an identity outlived its token: %v", err)
	}

	ttl := auth.NewCache(next, auth.CacheConfig{TTL: 100 * time.Millisecond})
	ttl.Verify(ctx, "long")
	time.Sleep(150 * time.Millisecond)
	before := next.calls.Load()
	ttl.Verify(ctx, "long")
	if next.calls.Load() != before+1 {
		t.Fatal("an identity outlived the TTL")
	}

	// The cache stays bounded under a flood of distinct tokens.
	for i := range 5000 {
		tok := string(rune(i + 1000))
		next.ids[tok] = auth.Identity{Subject: tok, Expiry: time.Now().Add(time.Hour)}
		c.Verify(ctx, tok)
	}
	if n := c.Len(); n > 64 {
		t.Fatalf("cache holds %d entries, bound 64", n)
	}
}
