package auth_test

import (
	"context"
	"testing"
	"time"

	"github.com/userattrs/userattrs/auth"
)

func benchTokens(b *testing.B, n int) (*auth.DevKey, []string) {
	key, err := auth.LoadOrCreateDevKey(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i], _ = key.Sign(auth.TokenRequest{Subject: "user-" + string(rune('a'+i%26)) + string(rune('a'+i/26%26)),
			ClientID: "app", Scopes: []string{"user:attributes:read"}, TTL: time.Hour})
	}
	return key, tokens
}

// BenchmarkVerifyFirstSight is a token the service has not seen: a full
// signature check and claim validation.
func BenchmarkVerifyFirstSight(b *testing.B) {
	key, tokens := benchTokens(b, 1)
	v := key.Verifier()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(context.Background(), tokens[0]); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkVerifyRepeated is a token seen before, as every request after a
// client's first is.
func BenchmarkVerifyRepeated(b *testing.B) {
	key, tokens := benchTokens(b, 100)
	v := auth.NewCache(key.Verifier(), auth.CacheConfig{})
	for _, t := range tokens {
		v.Verify(context.Background(), t)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, err := v.Verify(context.Background(), tokens[i%len(tokens)]); err != nil {
			b.Fatal(err)
		}
	}
}
