package reliability_test

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/internal/faulttest"
	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/internal/oidctest"
	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/internal/testmain"
	"github.com/userattrs/userattrs/internal/testutil"
	"github.com/userattrs/userattrs/reliability"
	"github.com/userattrs/userattrs/server"
	"github.com/userattrs/userattrs/store/keycloak"
	"github.com/userattrs/userattrs/store/memory"
	"github.com/userattrs/userattrs/store/postgres"
)

// Everything the services of the suite logged, and everything secret the
// suite sent: TestMain finds none of the latter in the former, faults or
// not.
var scan testutil.LogScan

func TestMain(m *testing.M) {
	os.Exit(testmain.Finish(m.Run(), &scan))
}

// storeTimeout is the bound every dependency call gets in these tests;
// margin is what a request may take beyond it.
const (
	storeTimeout = time.Second
	margin       = time.Second
	// recoveryBound is how soon after a fault ends the service must serve
	// again by itself.
	recoveryBound = 15 * time.Second
)

// instance is one service in the test process, in front of a dependency
// that a fault proxy stands before.
type instance struct {
	url    string
	tokens map[string]string // user -> token with both scopes
	writes bool              // whether the fault is on the path of writes
	close  func()
	check  func(t *testing.T) // what must hold of the dependency's client once the load ended
}

// dependency prepares its dependency behind proxy (and the tokens its
// users need) and returns what starts the service in front of it.
// startsFirst says whether the service starts before the fault; false: the
// fault must meet an instance that has not yet fetched what it needs.
type dependency struct {
	name        string
	startsFirst bool
	prepare     func(t *testing.T, proxy *faulttest.Proxy) (start func() *instance)
	upstream    func(t *testing.T) string // host:port of the real dependency
}

// serve runs the whole HTTP surface over svc as the service does.
func serve(t *testing.T, svc *userattrs.Service, verifier auth.Verifier, readiness ...server.ReadinessCheck) (string, func()) {
	reg := prometheus.NewRegistry()
	h := server.NewServer(server.Config{
		Service: svc, Verifier: verifier, Logger: slog.New(slog.NewJSONHandler(scan.Writer(), nil)), Metrics: reg, MaxBodyBytes: 64 << 10,
		Readiness:    append([]server.ReadinessCheck{{Name: "store", Check: svc.Ping}}, readiness...),
		CheckTimeout: storeTimeout,
	})
	srv := httptest.NewUnstartedServer(h)
	srv.Config = server.NewHTTPServer(h, nil)
	srv.Start()
	return srv.URL, srv.Close
}

func newService(store userattrs.Store) *userattrs.Service {
	limits := userattrs.DefaultLimits
	limits.MaxAttributes, limits.MaxUserBytes = 1<<20, 1<<30
	return userattrs.NewService(store, userattrs.ServiceConfig{Limits: limits, StoreTimeout: storeTimeout,
		ReadCache: userattrs.ReadCacheConfig{Enabled: true, TTL: 2 * time.Second}, MaxStoreOperations: 256})
}

// devTokens are tokens of a development key for users, and its verifier:
// for the stores, whose faults are not the issuer's.
func devTokens(t *testing.T, users ...string) (map[string]string, auth.Verifier) {
	key, err := auth.LoadOrCreateDevKey(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tokens := map[string]string{}
	for _, u := range users {
		tok, err := key.Sign(auth.TokenRequest{Subject: u, ClientID: "app", Scopes: []string{"user:attributes:read", "user:attributes:write"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		tokens[u] = tok
		scan.Secrets.Add(tok)
	}
	return tokens, key.Verifier()
}

func hostPort(t *testing.T, raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u.Host
}

var dependencies = []dependency{
	{
		name:        "PostgreSQL",
		startsFirst: true,
		upstream:    func(t *testing.T) string { return hostPort(t, pgtest.Shared(t).URL) },
		prepare: func(t *testing.T, proxy *faulttest.Proxy) func() *instance {
			db := pgtest.Shared(t).NewDatabase(t)
			u, _ := url.Parse(db)
			u.Host = proxy.Addr
			q := u.Query()
			q.Set("connect_timeout", "1")
			u.RawQuery = q.Encode()
			return func() *instance {
				store, err := postgres.Open(context.Background(), postgres.Config{URL: u.String(), Migrate: true})
				if err != nil {
					t.Fatal(err)
				}
				tokens, verifier := devTokens(t, "alice", "bob")
				svc := newService(store)
				addr, stop := serve(t, svc, verifier)
				return &instance{url: addr, tokens: tokens, writes: true,
					close: func() { stop(); store.Close() },
					check: func(t *testing.T) {
						// The pool gives back every connection once the load
						// ends, broken ones included.
						deadline := time.Now().Add(5 * time.Second)
						for store.Stat().AcquiredConns() != 0 {
							if time.Now().After(deadline) {
								t.Errorf("%d connections still acquired after the load", store.Stat().AcquiredConns())
								return
							}
							time.Sleep(50 * time.Millisecond)
						}
						if total, max := store.Stat().TotalConns(), store.PoolSize(); total > max {
							t.Errorf("%d connections open, the pool allows %d", total, max)
						}
					}}
			}
		},
	},
	{
		name:        "Keycloak",
		startsFirst: true,
		upstream:    func(t *testing.T) string { return hostPort(t, kctest.Shared(t).URL) },
		prepare: func(t *testing.T, proxy *faulttest.Proxy) func() *instance {
			kc := kctest.Shared(t)
			users := []string{kc.NewUser(t).ID, kc.NewUser(t).ID}
			return func() *instance {
				store, err := keycloak.Open(keycloak.Config{URL: "http://" + proxy.Addr, Realm: kc.Realm,
					ClientID: kc.ClientID, ClientSecret: kc.ClientSecret, Timeout: storeTimeout})
				if err != nil {
					t.Fatal(err)
				}
				tokens, verifier := devTokens(t, users...)
				svc := newService(store)
				addr, stop := serve(t, svc, verifier)
				return &instance{url: addr, tokens: tokens, writes: true, close: func() { stop(); store.Close() }}
			}
		},
	},
	{
		name: "OIDC issuer (keys)",
		prepare: func(t *testing.T, proxy *faulttest.Proxy) func() *instance {
			op := issuerBehind(t, proxy)
			tokens := map[string]string{}
			for _, u := range []string{"alice", "bob"} {
				tokens[u] = op.UserTokens(t, oidctest.TokenRequest{Subject: u, Scope: "user:attributes:read user:attributes:write"}).Access
				scan.Secrets.Add(tokens[u])
			}
			http.DefaultClient.CloseIdleConnections()
			return func() *instance {
				verifier := auth.NewOIDC(auth.OIDCConfig{Issuer: op.URL, Rules: auth.Rules{Audience: oidctest.API}})
				addr, stop := serve(t, newService(memory.New()), auth.NewCache(verifier, auth.CacheConfig{}),
					server.ReadinessCheck{Name: "token issuer", Check: verifier.Ready})
				return &instance{url: addr, tokens: tokens, close: stop}
			}
		},
	},
	{
		name:        "introspection",
		startsFirst: true,
		prepare: func(t *testing.T, proxy *faulttest.Proxy) func() *instance {
			op := issuerBehind(t, proxy)
			tokens := map[string]string{}
			for _, u := range []string{"alice", "bob"} {
				tokens[u] = op.UserTokens(t, oidctest.TokenRequest{Subject: u, Scope: "user:attributes:read user:attributes:write", Opaque: true}).Access
				scan.Secrets.Add(tokens[u])
			}
			http.DefaultClient.CloseIdleConnections()
			// No cache: every request asks the endpoint, so that its fault
			// meets every request.
			return func() *instance {
				in := auth.NewIntrospector(auth.IntrospectionConfig{URL: op.IntrospectionURL(), ClientID: oidctest.IntrospectionClient,
					ClientSecret: oidctest.IntrospectionSecret, Rules: auth.Rules{Audience: oidctest.API}})
				addr, stop := serve(t, newService(memory.New()), in, server.ReadinessCheck{Name: "introspection", Check: in.Ready})
				return &instance{url: addr, tokens: tokens, close: stop}
			}
		},
	},
}

// issuerBehind starts oidc-provider with the proxy in front of it, as its
// clients reach it.
func issuerBehind(t *testing.T, proxy *faulttest.Proxy) *oidctest.Provider {
	return oidctest.StartBehind(t, func(upstream string) string {
		proxy.Retarget(upstream)
		return proxy.Addr
	}, oidctest.SigningKey(t, "RS256", "rs"))
}

// Every dependency, every fault: requests answer within the bound (503
// while the dependency is out), readiness fails while it is out, the
// service serves again by itself once the fault ends, no acknowledged write
// is lost, and no goroutine or connection is left behind.
func TestFaults(t *testing.T) {
	for _, dep := range dependencies {
		t.Run(dep.name, func(t *testing.T) {
			upstream := "127.0.0.1:1" // retargeted by dependencies that start behind it
			if dep.upstream != nil {
				upstream = dep.upstream(t)
			}
			for _, fault := range faulttest.Faults {
				t.Run(fault.Name, func(t *testing.T) {
					// Registered first, so run last: after the dependency
					// and its proxy are gone, what is left is the service's.
					before := goleak.IgnoreCurrent()
					t.Cleanup(func() {
						http.DefaultTransport.(*http.Transport).CloseIdleConnections()
						goleak.VerifyNone(t, before)
					})
					proxy := faulttest.New(t, strings.ReplaceAll(dep.name, " ", "-"), upstream)
					runFault(t, dep, proxy, fault)
				})
			}
		})
	}
}

func runFault(t *testing.T, dep dependency, proxy *faulttest.Proxy, fault faulttest.Fault) {
	start := dep.prepare(t, proxy)
	var in *instance
	if dep.startsFirst {
		in = start()
	}
	var load *reliability.Load
	if in != nil {
		load = reliability.StartLoad(func() []string { return []string{in.url} }, in.tokens, 100000, true)
		time.Sleep(500 * time.Millisecond)
	}
	proxy.Inject(fault)
	if in == nil {
		in = start()
		load = reliability.StartLoad(func() []string { return []string{in.url} }, in.tokens, 100000, true)
	}
	load.Window()
	time.Sleep(2 * time.Second)
	ready := status(t, in.url+"/health/readiness", "")
	load.EndWindow()
	proxy.Heal()
	healed := time.Now()

	var recovered time.Duration
	for user, tok := range in.tokens {
		for status(t, in.url+"/user/2025-1/attributes", tok) != 200 || (in.writes && put(t, in.url, tok, user) != 204) ||
			status(t, in.url+"/health/readiness", "") != 200 {
			if time.Since(healed) > recoveryBound {
				t.Fatalf("not serving %v after the fault ended", recoveryBound)
			}
			time.Sleep(50 * time.Millisecond)
		}
		recovered = time.Since(healed)
		break
	}
	time.Sleep(500 * time.Millisecond) // writes succeed again
	load.Finish()

	load.CheckAnswers(t, storeTimeout+margin, true)
	if fault.Breaks {
		if ready != 503 {
			t.Errorf("readiness while the dependency is out: %d, want 503", ready)
		}
		if load.WindowCount(503) == 0 {
			t.Errorf("no request got 503 while the dependency was out")
		}
	}
	acked, lost := load.CheckAcked(t, in.url, in.tokens)
	if in.check != nil {
		in.check(t)
	}
	in.close()
	reliability.Report(t.Logf, reliability.Row{Scenario: dep.name + ": " + fault.Name, Answers: load.Answers(),
		Acked: acked, Lost: lost, Recovery: &recovered})
}

var probe = &http.Client{Timeout: 10 * time.Second}

func status(t *testing.T, url, token string) int { return send(t, "GET", url, token, "") }

func put(t *testing.T, base, token, user string) int {
	return send(t, "PUT", base+"/user/2024-3/attributes", token, fmt.Sprintf(`{"recovered_%s":"yes"}`, user))
}

// send returns the status of one request, 0 for no answer.
func send(t *testing.T, method, url, token, body string) int {
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := probe.Do(req)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	defer probe.CloseIdleConnections()
	return resp.StatusCode
}
