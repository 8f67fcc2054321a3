package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/userattrs/userattrs/client"
	"github.com/userattrs/userattrs/internal/pgtest"
)

// statusCounter is a transport that counts the statuses a client saw.
type statusCounter struct {
	next http.RoundTripper
	mu   sync.Mutex
	seen map[int]int
}

func (c *statusCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	res, err := c.next.RoundTrip(r)
	if err == nil {
		c.mu.Lock()
		c.seen[res.StatusCode]++
		c.mu.Unlock()
	}
	return res, err
}

func (c *statusCounter) count(status int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[status]
}

// newAPIClient returns a client of url with token, and the count of the
// statuses it sees.
func newAPIClient(t *testing.T, url, token string, cfg client.Config) (*client.Client, *statusCounter) {
	t.Helper()
	scan.Secrets.Add(token)
	hc := client.StaticToken(context.Background(), token)
	counter := &statusCounter{next: hc.Transport, seen: map[int]int{}}
	hc.Transport = counter
	cfg.URL, cfg.HTTPClient = url, hc
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, counter
}

// hookEvents is a webhook receiver written as a Go receiver would be,
// with client.VerifyWebhook.
type hookEvents struct {
	url    string
	events chan *client.Event
}

func startVerifyingReceiver(t *testing.T) *hookEvents {
	h := &hookEvents{events: make(chan *client.Event, 1000)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		e, err := client.VerifyWebhook([]string{webhookSecret}, r.Header, body)
		if err != nil {
			t.Errorf("a delivery that does not verify: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		if tampered := bytes.Replace(body, []byte(e.Subject), []byte("mallory"), 1); !errors.Is(verifyErr(r.Header, tampered), client.ErrBadSignature) {
			t.Errorf("a tampered delivery verifies")
		}
		h.events <- e
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

func verifyErr(h http.Header, body []byte) error {
	_, err := client.VerifyWebhook([]string{webhookSecret}, h, body)
	return err
}

// The client package against a real serve on SQLite: the self-service and
// admin reads and merges, typed errors with their request ids, the If-Match
// loop under concurrent writers (no increment lost), history pages,
// export, erasure and the erasure's event checked as a Go receiver checks
// it; then the CLI's commands on the same server.
func TestClientAgainstServe(t *testing.T) {
	dir := t.TempDir()
	hook := startVerifyingReceiver(t)
	scan.Secrets.Add(webhookSecret)
	p := startServe(t, dir, []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret}, "--dev", "--data-dir", dir,
		"--events-webhook-url", hook.url)
	ctx := context.Background()
	alice := mintToken(t, dir, "--sub", "alice", "--data-dir", dir)
	adminToken := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)
	self, _ := newAPIClient(t, p.url, alice, client.Config{})
	admin, _ := newAPIClient(t, p.url, adminToken, client.Config{})

	if err := self.Merge(ctx, client.Me, client.Patch{"tos_accepted": {"v3"}, "langs": {"fr", "en"}}, ""); err != nil {
		t.Fatal(err)
	}
	own, etag, err := self.Get(ctx, client.Me)
	if err != nil || !slices.Equal(own["tos_accepted"], []string{"v3"}) || !slices.Equal(own["langs"], []string{"fr", "en"}) || etag == "" {
		t.Fatalf("self-service read: %v %q %v", own, etag, err)
	}
	if got, _, err := admin.Get(ctx, "alice"); err != nil || !slices.Equal(got["langs"], own["langs"]) {
		t.Fatalf("admin read: %v %v", got, err)
	}

	// Errors come typed, with the request id to quote.
	err = admin.Merge(ctx, "alice", client.Patch{"bad\x01key": {"x"}}, "")
	var apiErr *client.Error
	if !errors.Is(err, client.ErrInvalidAttribute) || !errors.As(err, &apiErr) || apiErr.Status != 422 || apiErr.RequestID == "" ||
		apiErr.Pointer == "" || !strings.Contains(err.Error(), apiErr.RequestID) {
		t.Fatalf("an invalid key: %#v", err)
	}
	if err := self.Merge(ctx, client.Me, client.Patch{"x": {"1"}}, `"stale"`); !errors.Is(err, client.ErrPreconditionFailed) {
		t.Fatalf("a stale If-Match: %v", err)
	}

	// Read-modify-write from several goroutines at once: If-Match refuses
	// all but one write of each round, Update reads again and retries,
	// and no increment is lost.
	const writers, increments = 4, 5
	var wg sync.WaitGroup
	for range writers {
		wg.Go(func() {
			for range increments {
				err := admin.Update(ctx, "alice", func(current client.Attributes) (client.Patch, error) {
					n := 0
					if v := current["count"]; len(v) == 1 {
						n, _ = strconv.Atoi(v[0])
					}
					return client.Patch{"count": {strconv.Itoa(n + 1)}}, nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	if got, _, _ := admin.Get(ctx, "alice"); !slices.Equal(got["count"], []string{strconv.Itoa(writers * increments)}) {
		t.Fatalf("count = %v after %d increments", got["count"], writers*increments)
	}

	// The history, three changes a page, newest first, as one sequence.
	var changes []client.Change
	for c, err := range admin.History(ctx, "alice", client.HistoryOptions{PageSize: 3}) {
		if err != nil {
			t.Fatal(err)
		}
		changes = append(changes, c)
	}
	if len(changes) != 1+writers*increments || !slices.Equal(changes[len(changes)-1].Set["langs"], []string{"fr", "en"}) ||
		changes[0].Set["count"][0] != strconv.Itoa(writers*increments) {
		t.Fatalf("%d changes in the history, want %d", len(changes), 1+writers*increments)
	}
	n := 0
	for _, err := range admin.History(ctx, "alice", client.HistoryOptions{Key: "langs"}) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1 {
		t.Fatalf("%d changes of langs", n)
	}

	x, err := admin.Export(ctx, "alice")
	if err != nil || len(x.History) != len(changes) || !slices.Equal(x.Attributes["tos_accepted"].Values, []string{"v3"}) {
		t.Fatalf("export: %+v %v", x, err)
	}
	if err := admin.Erase(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	if got, _, err := self.Get(ctx, client.Me); err != nil || len(got) != 0 {
		t.Fatalf("after the erasure: %v %v", got, err)
	}
	if x, err := admin.Export(ctx, "alice"); err != nil || len(x.History) != 0 || len(x.Erasures) != 1 || !x.Erasures[0].Erased {
		t.Fatalf("export after the erasure: %+v %v", x, err)
	}
	// Receivers learn of the erasure, and then of nothing more of alice:
	// the changes not yet delivered went with her.
	deadline := time.After(30 * time.Second)
	for erased := false; !erased; {
		select {
		case e := <-hook.events:
			if e.Subject != "alice" || e.Type != client.ChangedType && e.Type != client.ErasedType {
				t.Fatalf("event %+v", e)
			}
			if erased = e.Type == client.ErasedType; erased && (!e.Change.Erased || len(e.Change.Set) != 0 || e.Change.Actor.Type != "service-account") {
				t.Fatalf("the erasure's event: %+v", e)
			}
		case <-deadline:
			t.Fatal("no erasure event within 30s")
		}
	}
	testCLI(t, p.url, adminToken)
	for {
		select {
		case e := <-hook.events:
			if e.Subject == "alice" {
				t.Fatalf("an event of alice after her erasure's: %+v", e)
			}
		default:
			return
		}
	}
}

// testCLI runs the CLI's API commands against the server at url.
func testCLI(t *testing.T, url, adminToken string) {
	ctx := context.Background()
	getenv := func(name string) string {
		if name == "USERATTRS_TOKEN" {
			return adminToken
		}
		return ""
	}
	cli := func(args ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(ctx, args, getenv, &stdout, &stderr)
		return stdout.String() + stderr.String(), err
	}
	if out, err := cli("set", "--url", url, "--user", "bob", "plan=pro", "langs=fr", "langs=de", "gone=x"); err != nil {
		t.Fatalf("set: %v %s", err, out)
	}
	out, err := cli("set", "--url", url, "--user", "bob", "gone=")
	if err != nil {
		t.Fatalf("set key=: %v %s", err, out)
	}
	out, err = cli("get", "--url", url, "--user", "bob")
	if err != nil || !strings.Contains(out, `{"langs":["fr","de"],"plan":["pro"]}`) || !strings.Contains(out, "ETag: \"") {
		t.Fatalf("get: %v %s", err, out)
	}
	etag := strings.TrimSpace(out[strings.Index(out, "ETag: ")+len("ETag: "):])
	if out, err := cli("set", "--url", url, "--user", "bob", "--if-match", `"stale"`, "plan=free"); !errors.Is(err, client.ErrPreconditionFailed) {
		t.Fatalf("set with a stale --if-match: %v %s", err, out)
	}
	if out, err := cli("set", "--url", url, "--user", "bob", "--if-match", etag, "plan=free"); err != nil {
		t.Fatalf("set with the current --if-match: %v %s", err, out)
	}
	out, err = cli("history", "--url", url, "--user", "bob")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); err != nil || len(lines) != 3 || !strings.Contains(lines[0], `"plan":["free"]`) {
		t.Fatalf("history: %v %s", err, out)
	}
	out, err = cli("export", "--url", url, "--user", "bob")
	var x client.Export
	if err != nil || json.Unmarshal([]byte(out), &x) != nil || len(x.History) != 3 || !slices.Equal(x.Attributes["plan"].Values, []string{"free"}) {
		t.Fatalf("export: %v %s", err, out)
	}
	if out, err := cli("erase", "--url", url, "--user", "bob"); err != nil {
		t.Fatalf("erase: %v %s", err, out)
	}
	if out, _ := cli("get", "--url", url, "--user", "bob"); !strings.HasPrefix(out, "{}") {
		t.Fatalf("get after erase: %s", out)
	}
	var usage usageError
	if _, err := cli("set", "--url", url, "--user", "bob", "a=1", "a="); !errors.As(err, &usage) {
		t.Fatalf("a key both set and removed: %v", err)
	}
	if err := run(ctx, []string{"get", "--url", url}, func(string) string { return "" }, io.Discard, io.Discard); !errors.As(err, &usage) {
		t.Fatalf("no token: %v", err)
	}
}

// The client waits as the service asks: a burst past the rate limit is
// answered 429 with Retry-After, which the client honours and then
// succeeds; a client told not to retry sees ErrRateLimited.
func TestClientHonoursRateLimits(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir, "--rate-limit-per-user", "2")
	tok := mintToken(t, dir, "--sub", "carol", "--data-dir", dir)
	ctx := context.Background()
	impatient, _ := newAPIClient(t, p.url, tok, client.Config{Retries: -1})
	var limited error
	for range 20 {
		if _, _, limited = impatient.Get(ctx, client.Me); limited != nil {
			break
		}
	}
	var apiErr *client.Error
	if !errors.Is(limited, client.ErrRateLimited) || !errors.As(limited, &apiErr) || apiErr.RetryAfter <= 0 {
		t.Fatalf("past the rate limit: %v", limited)
	}
	patient, seen := newAPIClient(t, p.url, tok, client.Config{Retries: 5})
	start := time.Now()
	for i := range 6 {
		if err := patient.Merge(ctx, client.Me, client.Patch{"n": {strconv.Itoa(i)}}, ""); err != nil {
			t.Fatalf("merge %d: %v", i, err)
		}
	}
	if seen.count(http.StatusTooManyRequests) == 0 || time.Since(start) < apiErr.RetryAfter {
		t.Fatalf("the client saw %v in %v: it did not wait as asked", seen.seen, time.Since(start))
	}
}

// While PostgreSQL is down the service answers 503 with Retry-After; the
// client retries until it is back, and the merge lands once.
func TestClientRetriesWhileTheDatabaseIsDown(t *testing.T) {
	srv := pgtest.Shared(t)
	if !srv.CanRestart() {
		t.Skipf("%s names a server these tests cannot stop", pgtest.EnvURL)
	}
	dir := t.TempDir()
	p := startOnPostgres(t, dir, srv.NewDatabase(t), "--store-timeout", "1s")
	tok := mintToken(t, dir, "--sub", "dave", "--data-dir", dir)
	ctx := context.Background()
	c, seen := newAPIClient(t, p.url, tok, client.Config{Retries: 40, MaxWait: 250 * time.Millisecond})
	if err := c.Merge(ctx, client.Me, client.Patch{"a": {"1"}}, ""); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	restarted := make(chan error, 1)
	go func() {
		time.Sleep(2 * time.Second)
		restarted <- srv.Start()
	}()
	if err := c.Merge(ctx, client.Me, client.Patch{"b": {"2"}}, ""); err != nil {
		t.Fatalf("a merge across the outage: %v (statuses %v)", err, seen.seen)
	}
	if err := <-restarted; err != nil {
		t.Fatal(err)
	}
	if seen.count(http.StatusServiceUnavailable) == 0 {
		t.Fatalf("statuses %v: the outage was never seen", seen.seen)
	}
	got, _, err := c.Get(ctx, client.Me)
	if err != nil || !slices.Equal(got["b"], []string{"2"}) || !slices.Equal(got["a"], []string{"1"}) {
		t.Fatalf("after the outage: %v %v", got, err)
	}
}
