package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/reliability"
)

func tokensFor(t *testing.T, dir string, users ...string) map[string]string {
	tokens := map[string]string{}
	for _, u := range users {
		tokens[u] = mintToken(t, dir, "--sub", u, "--data-dir", dir)
	}
	return tokens
}

func startOnPostgres(t *testing.T, dir, url string, extra ...string) *process {
	return startServe(t, dir, nil, append([]string{"--dev", "--data-dir", dir, "--store", url}, extra...)...)
}

// Two instances on one database keep the contract together: concurrent
// merges of one user through both lose nothing, and If-Match holds across
// them.
func TestInstancesShareOneDatabase(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	a := startOnPostgres(t, dir, url)
	b := startOnPostgres(t, dir, url)
	tokens := tokensFor(t, dir, "alice", "bob", "carol")

	load := reliability.StartLoad(func() []string { return []string{a.url, b.url} }, tokens, 25, false)
	load.Wait()
	load.Finish()
	if n := load.Count(204); n != 2*3*25 {
		t.Fatalf("%d of %d PUTs got 204", n, 2*3*25)
	}
	if n, _ := load.CheckAcked(t, a.url, tokens); n != 150 {
		t.Fatalf("%d acknowledged keys checked", n)
	}
	load.CheckAcked(t, b.url, tokens)

	tok := tokens["alice"]
	resp, err := http.DefaultClient.Do(mustRequest(t, "GET", a.url+"/user/2025-1/attributes", tok, ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	if status, _ := call(t, "PUT", a.url+"/user/2024-3/attributes", tok, `{"moved":"on"}`); status != 204 {
		t.Fatalf("PUT through a: %d", status)
	}
	if status, body := call(t, "PUT", b.url+"/user/2024-3/attributes", tok, `{"stale":"write"}`, "If-Match", etag); status != 412 {
		t.Fatalf("stale If-Match through the other instance: %d %s", status, body)
	}
	if _, body := call(t, "GET", b.url+"/user/2025-1/attributes", tok, ""); strings.Contains(body, "stale") {
		t.Fatalf("a 412 changed the attributes: %s", body)
	}
}

func mustRequest(t *testing.T, method, url, tok, body string) *http.Request {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return req
}

// With the database stopped under load, clients get 503 JSON:API errors
// within the store timeout and readiness fails; once it is back the same
// instances serve again, and nothing acknowledged is lost.
func TestDatabaseOutage(t *testing.T) {
	srv := pgtest.Shared(t)
	if !srv.CanRestart() {
		t.Skipf("%s names a server these tests cannot stop", pgtest.EnvURL)
	}
	url := srv.NewDatabase(t)
	dir := t.TempDir()
	a := startOnPostgres(t, dir, url, "--store-timeout", "2s", "--max-attributes", "1000000", "--max-user-bytes", "1000000000")
	b := startOnPostgres(t, dir, url, "--store-timeout", "2s", "--max-attributes", "1000000", "--max-user-bytes", "1000000000")
	tokens := tokensFor(t, dir, "alice", "bob")
	load := reliability.StartLoad(func() []string { return []string{a.url, b.url} }, tokens, 100000, false)
	time.Sleep(500 * time.Millisecond)

	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			srv.Start()
		}
	}()
	time.Sleep(300 * time.Millisecond)
	for _, p := range []*process{a, b} {
		start := time.Now()
		status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tokens["alice"], `{"during":"outage"}`)
		if status != 503 || !strings.Contains(body, `"code":"store-unavailable"`) {
			t.Fatalf("PUT during the outage: %d %s", status, body)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("PUT during the outage took %s", d)
		}
		status, body = call(t, "GET", p.url+"/user/2025-1/attributes", tokens["alice"], "")
		if status != 503 || !strings.Contains(body, `"status":"503"`) {
			t.Fatalf("GET during the outage: %d %s", status, body)
		}
		if status, _ := call(t, "GET", p.url+"/health/readiness", "", ""); status != 503 {
			t.Fatalf("readiness during the outage: %d", status)
		}
	}
	time.Sleep(time.Second)

	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	restarted = true
	back := time.Now()
	for _, p := range []*process{a, b} {
		p.waitReady(t, 30*time.Second)
	}
	recovered := time.Since(back)
	time.Sleep(time.Second) // writers succeed again
	load.Finish()

	load.CheckOutage(t, 4*time.Second)
	for _, p := range []*process{a, b} {
		if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tokens["bob"], `{"after":"outage"}`); status != 204 {
			t.Fatalf("PUT after the outage: %d %s", status, body)
		}
	}
	n, lost := load.CheckAcked(t, a.url, tokens)
	reliability.Report(t.Logf, reliability.Row{Scenario: "PostgreSQL stopped under load, two instances", Answers: load.Answers(),
		Acked: n, Lost: lost, Recovery: &recovered, Note: "recovery counted from the restart"})
}

// kill -9 of an instance under write load loses nothing that got a 204.
func TestKillInstanceUnderLoad(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	killUnderLoad(t, "kill -9 of an instance under write load (PostgreSQL)", dir, []string{"alice", "bob"}, func() *process {
		return startOnPostgres(t, dir, url, "--max-attributes", "1000000", "--max-user-bytes", "1000000000")
	})
}
