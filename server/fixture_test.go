package server_test

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/internal/sdkdecode"
	"github.com/userattrs/userattrs/internal/testutil"
	"github.com/userattrs/userattrs/metrics"
	"github.com/userattrs/userattrs/server"
	"github.com/userattrs/userattrs/store/memory"
)

const (
	read  = "user:attributes:read"
	write = "user:attributes:write"
)

// fixture is the whole HTTP surface over a real SQLite store, trusting
// tokens of a development key the test holds.
type fixture struct {
	t       testing.TB
	handler http.Handler
	url     string
	key     *auth.DevKey
	logs    *testutil.SyncBuffer
	// iosUndecodable: the fixture's policy reserves no names, so its
	// self-service GETs may hold what the iOS SDK cannot decode; every
	// other fixture checks each of them with the SDK's decoding.
	iosUndecodable bool
}

// selfServiceAttributes matches the path of the self-service attributes
// route, whose answers the iOS SDK decodes.
var selfServiceAttributes = regexp.MustCompile(`^/user/[^/]+/attributes$`)

type options struct {
	store        userattrs.Store
	policy       userattrs.Policy
	limits       userattrs.Limits
	cache        userattrs.ReadCacheConfig
	maxBody      int64
	readiness    []server.ReadinessCheck
	rules        server.LinkedIdentityRules
	links        server.LinkedIdentities
	verifier     auth.Verifier // instead of the development key's
	checkTimeout time.Duration
	rateLimits   server.RateLimits
	maxStoreOps  int
	// outbox serves the parked-events routes (501 without).
	outbox userattrs.Outbox
	// reserveNothing: a policy without reserved names (o.policy is then
	// ignored).
	reserveNothing bool
}

// Everything every fixture of the suite logs, and everything secret the
// suite sent: TestMain finds none of the latter in the former.
var scan testutil.LogScan

func TestMain(m *testing.M) {
	code := m.Run()
	code = scan.Check(code)
	os.Exit(code)
}

func newFixture(t testing.TB, edit ...func(*options)) *fixture {
	t.Helper()
	policy, err := userattrs.NewPolicy(userattrs.PolicyConfig{Reserved: userattrs.DefaultReserved})
	if err != nil {
		t.Fatal(err)
	}
	o := options{limits: userattrs.DefaultLimits, maxBody: 64 << 10, policy: policy}
	for _, e := range edit {
		e(&o)
	}
	if o.reserveNothing {
		o.policy = userattrs.Policy{}
	}
	if o.store == nil {
		// The reference store has every capability the routes use.
		o.store = memory.New()
	}
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	svc := userattrs.NewService(metrics.InstrumentStore(o.store, "test", reg),
		userattrs.ServiceConfig{Limits: o.limits, Policy: o.policy, StoreTimeout: 2 * time.Second, ReadCache: o.cache,
			MaxStoreOperations: o.maxStoreOps})
	logs := &testutil.SyncBuffer{}
	if o.verifier == nil {
		o.verifier = auth.NewCache(key.Verifier(), auth.CacheConfig{})
	}
	h := server.NewServer(server.Config{
		Service: svc, Verifier: o.verifier, Metrics: reg, MaxBodyBytes: o.maxBody, CheckTimeout: o.checkTimeout, RateLimits: o.rateLimits,
		Logger:              slog.New(slog.NewJSONHandler(io.MultiWriter(logs, scan.Writer()), nil)),
		Readiness:           append([]server.ReadinessCheck{{Name: "store", Check: svc.Ping}}, o.readiness...),
		LinkedIdentityRules: o.rules,
		LinkedIdentities:    o.links,
		Outbox:              o.outbox,
	})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return &fixture{t: t, handler: h, url: srv.URL, key: key, logs: logs, iosUndecodable: o.reserveNothing}
}

func (f *fixture) token(sub string, scopes ...string) string {
	f.t.Helper()
	return f.clientToken("test-app", sub, scopes...)
}

// adminToken is a service account's token (client credentials: its
// subject is its client) with the admin scope.
func (f *fixture) adminToken() string {
	f.t.Helper()
	return f.clientToken("backend", "backend", "user:attributes:admin")
}

func (f *fixture) clientToken(client, sub string, scopes ...string) string {
	f.t.Helper()
	tok, err := f.key.Sign(auth.TokenRequest{Subject: sub, ClientID: client, Scopes: scopes, TTL: time.Hour})
	if err != nil {
		f.t.Fatal(err)
	}
	scan.Secrets.Add(tok)
	return tok
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// errorDoc is a JSON:API error document as a client decodes it.
type errorDoc struct {
	Errors []struct {
		ID     string `json:"id"`
		Status string `json:"status"`
		Code   string `json:"code"`
		Title  string `json:"title"`
		Detail string `json:"detail"`
		Source *struct {
			Pointer *string `json:"pointer"`
		} `json:"source"`
	} `json:"errors"`
}

// do sends a request; headers alternate names and values.
func (f *fixture) do(method, path, body string, headers ...string) response {
	f.t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.url+path, r)
	if err != nil {
		f.t.Fatal(err)
	}
	for i := 0; i < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
		if strings.EqualFold(headers[i], "Authorization") {
			scan.Secrets.Add(strings.TrimPrefix(headers[i+1], "Bearer "))
		}
	}
	scan.Secrets.AddBody(body)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		f.t.Fatal(err)
	}
	if method == "GET" && resp.StatusCode == http.StatusOK && !f.iosUndecodable && selfServiceAttributes.MatchString(req.URL.Path) {
		sdkdecode.CheckIOS(f.t, b)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (f *fixture) get(tok string) response {
	return f.do("GET", "/user/2025-1/attributes", "", "Authorization", "Bearer "+tok)
}

func (f *fixture) put(tok, body string, headers ...string) response {
	return f.do("PUT", "/user/2024-3/attributes", body,
		append([]string{"Authorization", "Bearer " + tok, "Content-Type", "application/json"}, headers...)...)
}

// attributes decodes a 200 GET body.
func (f *fixture) attributes(tok string) map[string]any {
	f.t.Helper()
	res := f.get(tok)
	if res.status != http.StatusOK {
		f.t.Fatalf("GET: %d %s", res.status, res.body)
	}
	var m map[string]any
	if err := json.Unmarshal(res.body, &m); err != nil {
		f.t.Fatalf("GET body %s: %v", res.body, err)
	}
	return m
}

// errorDoc checks that res is a JSON:API error document of status whose
// every error has code and the request's id, and returns it.
func (r response) errors(t *testing.T, status int, code string) errorDoc {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/vnd.api+json" {
		t.Fatalf("Content-Type %q", ct)
	}
	var doc errorDoc
	if err := json.Unmarshal(r.body, &doc); err != nil || len(doc.Errors) == 0 {
		t.Fatalf("not an error document: %s (%v)", r.body, err)
	}
	id := r.header.Get("Request-Id")
	for _, e := range doc.Errors {
		if e.ID != id || len(id) != 20 {
			t.Errorf("error id %q, Request-Id %q", e.ID, id)
		}
		if e.Status != strconv.Itoa(status) || e.Code != code || e.Title == "" || e.Detail == "" {
			t.Errorf("error %+v, want status %d code %s with title and detail", e, status, code)
		}
	}
	return doc
}

func (d errorDoc) pointers() []string {
	var out []string
	for _, e := range d.Errors {
		if e.Source == nil || e.Source.Pointer == nil {
			out = append(out, "<none>")
			continue
		}
		out = append(out, *e.Source.Pointer)
	}
	return out
}
