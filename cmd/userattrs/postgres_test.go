package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/pgtest"
)

// writeLoad is writers PUTting distinct keys through some instances until
// stopped, remembering every key that got a 204.
type writeLoad struct {
	acked    sync.Map // user -> *sync.Map of key -> struct{}
	statuses sync.Map // status -> *atomic.Int64
	slowest  atomic.Int64
	stop     chan struct{}
	wg       sync.WaitGroup
}

// startWriteLoad starts one writer per (instance, user) pair. Each writer
// sends at most maxPuts requests.
func startWriteLoad(t *testing.T, instances func() []string, tokens map[string]string, maxPuts int) *writeLoad {
	w := &writeLoad{stop: make(chan struct{})}
	client := &http.Client{Timeout: 10 * time.Second}
	writer := 0
	for i := range len(instances()) {
		for user, tok := range tokens {
			writer++
			id := writer
			w.wg.Go(func() {
				for n := range maxPuts {
					select {
					case <-w.stop:
						return
					default:
					}
					key := fmt.Sprintf("w%d-%d", id, n)
					req, _ := http.NewRequest("PUT", instances()[i]+"/user/2024-3/attributes", strings.NewReader(`{"`+key+`":"v"}`))
					req.Header.Set("Authorization", "Bearer "+tok)
					start := time.Now()
					resp, err := client.Do(req)
					if d := time.Since(start); d.Nanoseconds() > w.slowest.Load() {
						w.slowest.Store(d.Nanoseconds())
					}
					status := 0
					if err == nil {
						resp.Body.Close()
						status = resp.StatusCode
					}
					c, _ := w.statuses.LoadOrStore(status, new(atomic.Int64))
					c.(*atomic.Int64).Add(1)
					if status == 204 {
						keys, _ := w.acked.LoadOrStore(user, &sync.Map{})
						keys.(*sync.Map).Store(key, struct{}{})
					}
					if err != nil || status >= 500 {
						time.Sleep(20 * time.Millisecond)
					}
				}
			})
		}
	}
	return w
}

func (w *writeLoad) finish() {
	close(w.stop)
	w.wg.Wait()
}

// checkOutage checks the answers of a load that ran through an outage:
// some 204s and some 503s, nothing else, none slower than bound.
func (w *writeLoad) checkOutage(t *testing.T, bound time.Duration) {
	t.Helper()
	if w.count(503) == 0 || w.count(204) == 0 {
		t.Fatalf("the load saw 204 %d times and 503 %d times", w.count(204), w.count(503))
	}
	w.statuses.Range(func(status, n any) bool {
		if status != 204 && status != 503 {
			t.Errorf("%d requests answered %d", n.(*atomic.Int64).Load(), status)
		}
		return true
	})
	if slowest := time.Duration(w.slowest.Load()); slowest > bound {
		t.Errorf("the slowest request took %s", slowest)
	}
}

func (w *writeLoad) count(status int) int64 {
	if c, ok := w.statuses.Load(status); ok {
		return c.(*atomic.Int64).Load()
	}
	return 0
}

// checkAcked reads every user through url and fails for any key that got a
// 204 and is missing.
func (w *writeLoad) checkAcked(t *testing.T, url string, tokens map[string]string) int {
	t.Helper()
	total := 0
	for user, tok := range tokens {
		status, body := call(t, "GET", url+"/user/2025-1/attributes", tok, "")
		var got map[string]any
		if status != 200 || json.Unmarshal([]byte(body), &got) != nil {
			t.Fatalf("GET %s: %d %s", user, status, body)
		}
		keys, ok := w.acked.Load(user)
		if !ok {
			continue
		}
		keys.(*sync.Map).Range(func(k, _ any) bool {
			total++
			if _, ok := got[k.(string)]; !ok {
				t.Errorf("user %s: acknowledged key %s is lost", user, k)
			}
			return true
		})
	}
	return total
}

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

	load := startWriteLoad(t, func() []string { return []string{a.url, b.url} }, tokens, 25)
	load.wg.Wait()
	load.finish()
	if n := load.count(204); n != 2*3*25 {
		t.Fatalf("%d of %d PUTs got 204", n, 2*3*25)
	}
	if n := load.checkAcked(t, a.url, tokens); n != 150 {
		t.Fatalf("%d acknowledged keys checked", n)
	}
	load.checkAcked(t, b.url, tokens)

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
	load := startWriteLoad(t, func() []string { return []string{a.url, b.url} }, tokens, 100000)
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
	for _, p := range []*process{a, b} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			if status, _ := call(t, "GET", p.url+"/health/readiness", "", ""); status == 200 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("readiness did not recover after the database came back")
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	time.Sleep(time.Second) // writers succeed again
	load.finish()

	load.checkOutage(t, 4*time.Second)
	for _, p := range []*process{a, b} {
		if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tokens["bob"], `{"after":"outage"}`); status != 204 {
			t.Fatalf("PUT after the outage: %d %s", status, body)
		}
	}
	n := load.checkAcked(t, a.url, tokens)
	t.Logf("%d acknowledged keys present; statuses: 204=%d 503=%d", n, load.count(204), load.count(503))
}

// kill -9 of an instance under write load loses nothing that got a 204.
func TestKillInstanceUnderLoad(t *testing.T) {
	url := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	a := startOnPostgres(t, dir, url, "--max-attributes", "1000000", "--max-user-bytes", "1000000000")
	tokens := tokensFor(t, dir, "alice", "bob")
	load := startWriteLoad(t, func() []string { return []string{a.url} }, tokens, 100000)
	time.Sleep(time.Second)
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.wait(t, 10*time.Second)
	load.finish()
	if load.count(204) == 0 {
		t.Fatal("no PUT succeeded before the kill")
	}
	b := startOnPostgres(t, dir, url, "--max-attributes", "1000000", "--max-user-bytes", "1000000000")
	n := load.checkAcked(t, b.url, tokens)
	t.Logf("%d acknowledged keys present after kill -9", n)
}
