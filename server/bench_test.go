package server_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/userattrs/userattrs/bench/workload"
	"github.com/userattrs/userattrs/store/sqlite"
)

// BenchmarkGet is the whole GET path of the handler (token check, store
// read, policy, ETag, encoding, logging, metrics) for users seen before.
func BenchmarkGet(b *testing.B) {
	f := newFixture(b, onSQLite(b), func(o *options) { o.cache.Enabled = true })
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
	f := newFixture(b, onSQLite(b))
	benchPuts(b, f, f.token("bench", read, write), `{"theme":"dark","tos_accepted":"true"}`, `{"theme":"light","tos_accepted":"true"}`)
}

// benchPuts times PUTs of the bodies in turn, each a change.
func benchPuts(b *testing.B, f *fixture, tok string, bodies ...string) {
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		req := httptest.NewRequest("PUT", "/user/2024-3/attributes", strings.NewReader(bodies[i%len(bodies)]))
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		f.handler.ServeHTTP(w, req)
		if w.Code != 204 {
			b.Fatalf("status %d", w.Code)
		}
	}
}

// sizedUser returns a user's token, after giving the user n attributes of
// a realistic size (a 20-byte name, a 16-byte value).
func sizedUser(b *testing.B, f *fixture, name string, n int) string {
	tok := f.token(name, read, write)
	if res := f.put(tok, string(workload.SizedBody(n))); res.status != 204 {
		b.Fatalf("seeding %d attributes: %d", n, res.status)
	}
	return tok
}

// BenchmarkPutSized is PUTs of 32 users at once that hold 2, 20 and 100
// attributes, each PUT changing one: what a merge costs as users grow, with
// the writer's batches as full as under load.
func BenchmarkPutSized(b *testing.B) {
	for _, n := range []int{2, 20, 100} {
		b.Run(fmt.Sprintf("attrs=%d", n), func(b *testing.B) {
			f := newFixture(b, onSQLite(b), func(o *options) { o.cache.Enabled = true })
			const users = 32
			tokens := make(chan string, users)
			for i := range users {
				tokens <- sizedUser(b, f, fmt.Sprintf("sized-%d", i), n)
			}
			bodies := []string{`{"onboarding_step_0000":"a"}`, `{"onboarding_step_0000":"b"}`}
			b.ReportAllocs()
			b.SetParallelism(users / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				tok := <-tokens
				for i := 0; pb.Next(); i++ {
					req := httptest.NewRequest("PUT", "/user/2024-3/attributes", strings.NewReader(bodies[i%2]))
					req.Header.Set("Authorization", "Bearer "+tok)
					w := httptest.NewRecorder()
					f.handler.ServeHTTP(w, req)
					if w.Code != 204 {
						b.Errorf("status %d", w.Code)
						return
					}
				}
			})
		})
	}
}

// BenchmarkGetSized is a GET of a cached user that holds 2, 20 and 100
// attributes: what a read costs as users grow.
func BenchmarkGetSized(b *testing.B) {
	for _, n := range []int{2, 20, 100} {
		b.Run(fmt.Sprintf("attrs=%d", n), func(b *testing.B) {
			f := newFixture(b, onSQLite(b), func(o *options) { o.cache.Enabled = true })
			req := httptest.NewRequest("GET", "/user/2025-1/attributes", nil)
			req.Header.Set("Authorization", "Bearer "+sizedUser(b, f, "sized", n))
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				w := httptest.NewRecorder()
				f.handler.ServeHTTP(w, req)
				if w.Code != 200 {
					b.Fatalf("status %d", w.Code)
				}
			}
		})
	}
}

// onSQLite runs a benchmark's fixture on the SQLite store, with the
// durable write every PUT costs in production, rather than in memory.
func onSQLite(b *testing.B) func(*options) {
	return func(o *options) {
		s, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(b.TempDir(), "u.db")})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		o.store = s
	}
}
