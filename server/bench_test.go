package server_test

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// BenchmarkGet is the whole GET path of the handler (token check, store
// read, policy, ETag, encoding, logging, metrics) for users seen before.
func BenchmarkGet(b *testing.B) {
	f := newFixture(b, func(o *options) { o.cache.Enabled = true })
	h := f.handler
	const users = 100
	tokens := make([]string, users)
	for i := range tokens {
		tokens[i] = f.token("bench-"+string(rune('a'+i%26))+string(rune('a'+i/26)), read, write)
		f.put(tokens[i], `{"referred":"false","tos_accepted":"true","theme":["dark","compact"]}`)
	}
	reqs := make([]*http.Request, users)
	for i, tok := range tokens {
		reqs[i] = httptest.NewRequest("GET", "/user/2025-1/attributes", nil)
		reqs[i].Header.Set("Authorization", "Bearer "+tok)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, reqs[i%users])
		if w.Code != 200 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// BenchmarkPut is the whole PUT path, each PUT changing the attributes.
func BenchmarkPut(b *testing.B) {
	f := newFixture(b)
	tok := f.token("bench", read, write)
	bodies := []string{`{"theme":"dark","tos_accepted":"true"}`, `{"theme":"light","tos_accepted":"true"}`}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest("PUT", "/user/2024-3/attributes", strings.NewReader(bodies[i%2]))
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, req)
		if w.Code != 204 {
			b.Fatalf("status %d", w.Code)
		}
	}
}
