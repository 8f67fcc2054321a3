package server_test

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/server"
	"github.com/userattrs/userattrs/store/memory"
)

// serveReal serves f's handler as the service does, on a real listener with
// the given connection bounds, and returns its address.
func serveReal(t *testing.T, f *fixture, limits server.ConnLimits, edit func(*http.Server)) string {
	t.Helper()
	srv := server.NewHTTPServer(f.handler, nil)
	if edit != nil {
		edit(srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	go srv.Serve(server.LimitConnections(srv, ln, limits, prometheus.NewRegistry()))
	t.Cleanup(func() { srv.Close() })
	return addr
}

// statusLine sends raw on the connection and returns the status line of
// the answer, having read the whole answer, or "" when the connection ends
// without one.
func statusLine(t *testing.T, c net.Conn, raw string) string {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	defer c.SetDeadline(time.Time{})
	if raw != "" {
		if _, err := c.Write([]byte(raw)); err != nil {
			return ""
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return ""
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.Proto + " " + resp.Status
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Connections beyond the bound get a 503 at once; idle keep-alive
// connections beyond theirs are closed, and make room for new clients.
func TestConnectionBounds(t *testing.T) {
	f := newFixture(t)
	addr := serveReal(t, f, server.ConnLimits{Max: 10, MaxIdle: 3}, nil)
	const probe = "GET /health/liveness HTTP/1.1\r\nHost: x\r\n\r\n"

	// Ten silent connections, as slowloris holds them, fill the bound.
	for range 10 {
		dial(t, addr)
	}
	time.Sleep(100 * time.Millisecond)
	if got := statusLine(t, dial(t, addr), ""); !strings.HasPrefix(got, "HTTP/1.1 503") {
		t.Fatalf("a connection beyond the bound: %q, want a 503", got)
	}

	// Idle keep-alive connections: at most three stay, and they give way.
	f2 := newFixture(t)
	addr = serveReal(t, f2, server.ConnLimits{Max: 6, MaxIdle: 3}, nil)
	var idle []net.Conn
	for range 6 {
		c := dial(t, addr)
		if got := statusLine(t, c, probe); got != "HTTP/1.1 200 OK" {
			t.Fatalf("probe: %q", got)
		}
		idle = append(idle, c)
	}
	time.Sleep(100 * time.Millisecond)
	open := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err != nil && strings.Contains(err.Error(), "timeout") {
			open++
		}
	}
	if open != 3 {
		t.Fatalf("%d idle connections kept, want 3", open)
	}
	for range 3 { // the three kept idle are closed to make room
		dial(t, addr)
	}
	time.Sleep(100 * time.Millisecond)
	if got := statusLine(t, dial(t, addr), probe); got != "HTTP/1.1 200 OK" {
		t.Fatalf("a probe after idle connections filled the bound: %q", got)
	}
}

// A body that arrives too slowly is answered 408, not 400.
func TestSlowBody(t *testing.T) {
	f := newFixture(t)
	addr := serveReal(t, f, server.DefaultConnLimits, func(s *http.Server) { s.ReadTimeout = 300 * time.Millisecond })
	c := dial(t, addr)
	tok := f.token("alice", write)
	got := statusLine(t, c, "PUT /user/2024-3/attributes HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "+tok+
		"\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"a\":")
	if got != "HTTP/1.1 408 Request Timeout" {
		t.Fatalf("a body cut short: %q", got)
	}
}

// An issuer whose keys are slow to come costs a request the check timeout,
// then 503, not the HTTP client's own timeout.
func TestSlowIssuer(t *testing.T) {
	release := make(chan struct{})
	issuer := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer issuer.Close()
	defer close(release)
	verifier := auth.NewOIDC(auth.OIDCConfig{Issuer: issuer.URL, Rules: auth.Rules{AnyAudience: true}})
	f := newFixture(t, func(o *options) { o.verifier = verifier; o.checkTimeout = 200 * time.Millisecond })
	tok := f.token("alice", read) // signed by a key the issuer would have to publish
	start := time.Now()
	res := f.get(tok)
	if res.status != 503 || time.Since(start) > 2*time.Second {
		t.Fatalf("GET with the issuer's keys slow: %d after %v, want 503 at the check timeout", res.status, time.Since(start))
	}
}

// Past a user's or a client's rate, requests get 429 with Retry-After;
// other users and clients are not held back.
func TestRateLimits(t *testing.T) {
	f := newFixture(t, func(o *options) { o.rateLimits = server.RateLimits{PerUser: 1, PerClient: 3} })
	alice, bob := f.token("alice", read), f.token("bob", read)
	for i := range 2 { // a burst of twice the rate
		if res := f.get(alice); res.status != 200 {
			t.Fatalf("request %d of alice's burst: %d", i, res.status)
		}
	}
	res := f.get(alice)
	res.errors(t, 429, "rate-limited")
	if ra := res.header.Get("Retry-After"); ra != "1" {
		t.Fatalf("Retry-After %q, want 1", ra)
	}
	if res := f.get(bob); res.status != 200 {
		t.Fatalf("bob held back by alice: %d", res.status)
	}
	// The client's six-request burst: alice's two and bob's one are spent.
	carol, dave, erin := f.token("carol", read), f.token("dave", read), f.token("erin", read)
	for _, tok := range []string{carol, dave, erin} {
		if res := f.get(tok); res.status != 200 {
			t.Fatalf("within the client's burst: %d", res.status)
		}
	}
	if res := f.get(f.token("frank", read)); res.status != 429 {
		t.Fatalf("past the client's burst: %d, want 429", res.status)
	}
	if res := f.get(f.clientToken("other-app", "frank", read)); res.status != 200 {
		t.Fatalf("another client held back: %d", res.status)
	}
}

// Past a user's budget of refused requests, the user's next requests are
// 429, answered after a wait (at most a second) and without the body read;
// a 412 spends nothing, and other users are not held back.
func TestRefusedRequestBudget(t *testing.T) {
	f := newFixture(t, func(o *options) { o.rateLimits = server.RateLimits{RefusedPerUser: 2} })
	mallory, bob := f.token("mallory", read, write), f.token("bob", read, write)
	f.do("PUT", "/user/2024-3/attributes", `{"a":"1"}`, "Authorization", "Bearer "+mallory, "Content-Type", "application/json",
		"If-Match", `"stale"`).errors(t, 412, "precondition-failed")
	for i := range 4 { // a burst of twice the rate
		if res := f.put(mallory, `{"a":1}`); res.status != 422 {
			t.Fatalf("bad body %d within the budget: %d", i, res.status)
		}
	}
	start := time.Now()
	res := f.put(mallory, `{"a":"fine"}`)
	res.errors(t, 429, "rate-limited")
	if waited := time.Since(start); waited < 200*time.Millisecond || res.header.Get("Retry-After") != "1" {
		t.Fatalf("past the budget: answered after %v with Retry-After %q", waited, res.header.Get("Retry-After"))
	}
	if res := f.put(bob, `{"a":"fine"}`); res.status != 204 {
		t.Fatalf("bob held back by mallory's refusals: %d", res.status)
	}
}

// A store busy beyond the instance's bound sheds requests at once, 503
// with Retry-After: 1.
func TestOverloadIsShed(t *testing.T) {
	st := &blockingStore{Store: memory.New(), release: make(chan struct{}), entered: make(chan struct{})}
	defer close(st.release)
	f := newFixture(t, func(o *options) { o.store = st; o.maxStoreOps = 1 })
	tok := f.token("alice", read, write)
	go f.put(tok, `{"a":"1"}`) // holds the one slot until released
	<-st.entered
	start := time.Now()
	res := f.get(f.token("bob", read))
	res.errors(t, 503, "store-unavailable")
	if res.header.Get("Retry-After") != "1" || time.Since(start) > time.Second {
		t.Fatalf("shed after %v with Retry-After %q", time.Since(start), res.header.Get("Retry-After"))
	}
}

type blockingStore struct {
	userattrs.Store
	release, entered chan struct{}
}

func (s *blockingStore) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) error {
	close(s.entered)
	<-s.release
	return s.Store.Update(ctx, user, update)
}
