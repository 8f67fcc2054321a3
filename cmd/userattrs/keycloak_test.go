package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/reliability"
)

const bothScopes = "user:attributes:read user:attributes:write"

// startOnKeycloak runs the service on the Keycloak store, verifying the
// realm's tokens, with the client secret from the environment as operators
// should pass it.
func startOnKeycloak(t *testing.T, kc *kctest.Keycloak, extra ...string) *process {
	t.Helper()
	args := append([]string{"--store", "keycloak", "--keycloak-url", kc.URL, "--keycloak-realm", kc.Realm,
		"--keycloak-client-id", kc.ClientID, "--oidc-issuer", kc.Issuer(), "--oidc-audience", kc.Audience}, extra...)
	return startServe(t, t.TempDir(), []string{"USERATTRS_KEYCLOAK_CLIENT_SECRET=" + kc.ClientSecret}, args...)
}

// The published example through the service lands on the Keycloak user,
// whose profile stays as it was, and reads back through the service.
func TestKeycloakEndToEnd(t *testing.T) {
	kc := kctest.Shared(t)
	p := startOnKeycloak(t, kc)
	u := kc.NewUser(t)
	tok, _ := kc.Token(t, u, "user:attributes:read", "user:attributes:write")
	before := kc.UserRepresentation(t, u.ID)

	status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"referred":"false","tos_accepted":"true"}`,
		"Content-Type", "application/json")
	if status != 204 {
		t.Fatalf("PUT: %d %s", status, body)
	}
	after := kc.UserRepresentation(t, u.ID)
	for _, f := range []string{"username", "email", "firstName", "lastName"} {
		if after[f] != before[f] || after[f] == nil {
			t.Errorf("%s: %v before the PUT, %v after", f, before[f], after[f])
		}
	}
	if attrs, _ := json.Marshal(after["attributes"]); string(attrs) != `{"referred":["false"],"tos_accepted":["true"]}` {
		t.Errorf("attributes in Keycloak: %s", attrs)
	}
	status, body = call(t, "GET", p.url+"/user/2025-1/attributes", tok, "", "Accept", "application/vnd.api+json")
	if status != 200 || body != `{"referred":"false","tos_accepted":"true"}` {
		t.Fatalf("GET: %d %s", status, body)
	}

	// Profile fields are not attributes here: not writable, email untouched.
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"email":"mallory@example.com"}`); status != 403 {
		t.Fatalf("PUT of email: %d", status)
	}
	if email := kc.UserRepresentation(t, u.ID)["email"]; email != before["email"] {
		t.Fatalf("email changed to %v", email)
	}
	if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"blank":""}`); status != 422 || !strings.Contains(body, `"pointer":"/blank"`) {
		t.Fatalf("PUT of an empty value: %d %s", status, body)
	}

	readOnly, _ := kc.Token(t, u, "user:attributes:read")
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", readOnly, `{"a":"1"}`); status != 403 {
		t.Fatalf("PUT with only the read scope: %d", status)
	}

	// Merges of one user at the same moment through one instance lose
	// nothing.
	const writers, each = 6, 5
	var wg sync.WaitGroup
	errs := make(chan string, writers*each)
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				key := fmt.Sprintf("c%d_%d", w, i)
				if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"`+key+`":"v"}`); status != 204 {
					errs <- fmt.Sprintf("%s: %d %s", key, status, body)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	stored := kc.UserRepresentation(t, u.ID)["attributes"].(map[string]any)
	for w := range writers {
		for i := range each {
			if _, ok := stored[fmt.Sprintf("c%d_%d", w, i)]; !ok {
				t.Errorf("key c%d_%d lost", w, i)
			}
		}
	}

	// A user deleted in Keycloak itself: 404 once the instance's read
	// cache entry expires (--read-cache-ttl, 2s by default).
	kc.Admin(t, "DELETE", "/users/"+u.ID, nil)
	deleted := time.Now()
	for {
		status, body := call(t, "GET", p.url+"/user/2025-1/attributes", tok, "")
		if status == 404 && strings.Contains(body, "not-found") {
			break
		}
		if time.Since(deleted) > 3*time.Second {
			t.Fatalf("GET for a deleted user, %s after the deletion: %d %s", time.Since(deleted), status, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Introspection accepts an active token and refuses it once its session is
// logged out; an introspection endpoint that fails is 503, never 200.
func TestKeycloakIntrospection(t *testing.T) {
	kc := kctest.Shared(t)
	introspect := kc.Issuer() + "/protocol/openid-connect/token/introspect"
	p := startServe(t, t.TempDir(), []string{"USERATTRS_INTROSPECTION_CLIENT_SECRET=" + kc.ClientSecret},
		"--store", "sqlite:"+t.TempDir()+"/u.db", "--introspection-url", introspect,
		"--introspection-client-id", kc.ClientID, "--introspection-cache-ttl", "0", "--oidc-audience", kc.Audience)
	u := kc.NewUser(t)
	tok, refresh := kc.Token(t, u, "user:attributes:read", "user:attributes:write")
	if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"a":"1"}`); status != 204 {
		t.Fatalf("PUT with an active token: %d %s", status, body)
	}
	if status, body := call(t, "GET", p.url+"/user/2025-1/attributes", tok, ""); status != 200 || body != `{"a":"1"}` {
		t.Fatalf("GET with an active token: %d %s", status, body)
	}
	kc.Logout(t, refresh)
	status, body := call(t, "GET", p.url+"/user/2025-1/attributes", tok, "")
	if status != 401 || !strings.Contains(body, "invalid-token") {
		t.Fatalf("GET with a revoked token: %d %s", status, body)
	}

	// A session deleted by an administrator revokes its tokens too.
	tok2, _ := kc.Token(t, u, "user:attributes:read")
	if status, _ := call(t, "GET", p.url+"/user/2025-1/attributes", tok2, ""); status != 200 {
		t.Fatalf("GET with a new token: %d", status)
	}
	if status, body := kc.Admin(t, "POST", "/users/"+u.ID+"/logout", nil); status != 204 {
		t.Fatalf("admin logout: %d %s", status, body)
	}
	if status, _ := call(t, "GET", p.url+"/user/2025-1/attributes", tok2, ""); status != 401 {
		t.Fatalf("GET after the sessions were deleted: %d", status)
	}

	down := startServe(t, t.TempDir(), nil, "--store", "sqlite:"+t.TempDir()+"/u.db",
		"--introspection-url", "http://127.0.0.1:1/introspect", "--introspection-client-id", "x", "--oidc-audience", kc.Audience)
	tok3, _ := kc.Token(t, u, "user:attributes:read")
	if status, body := call(t, "GET", down.url+"/user/2025-1/attributes", tok3, ""); status != 503 || !strings.Contains(body, "store-unavailable") {
		t.Fatalf("GET with the introspection endpoint down: %d %s", status, body)
	}
}

// A client configured to need a linked identity is refused for a user
// without one, and served once the link exists in Keycloak.
func TestKeycloakLinkedIdentity(t *testing.T) {
	kc := kctest.Shared(t)
	p := startOnKeycloak(t, kc, "--require-linked-identity", kc.AppClientID+"="+kc.IDPAlias)
	u := kc.NewUser(t)
	tok, _ := kc.Token(t, u, "user:attributes:read", "user:attributes:write")
	status, body := call(t, "GET", p.url+"/user/2025-1/attributes", tok, "")
	if status != 401 || !strings.Contains(body, `"code":"missing-linked-identity"`) ||
		!strings.Contains(body, `"title":"Missing linked identity for authorized access"`) {
		t.Fatalf("GET without a linked identity: %d %s", status, body)
	}
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"a":"1"}`); status != 401 {
		t.Fatalf("PUT without a linked identity: %d", status)
	}
	if status, body := kc.Admin(t, "POST", "/users/"+u.ID+"/federated-identity/"+kc.IDPAlias,
		map[string]string{"identityProvider": kc.IDPAlias, "userId": "partner-" + u.ID, "userName": u.Username}); status != 204 {
		t.Fatalf("link: %d %s", status, body)
	}
	if status, body := call(t, "GET", p.url+"/user/2025-1/attributes", tok, ""); status != 200 {
		t.Fatalf("GET with a linked identity: %d %s", status, body)
	}
}

// Keycloak frozen, then stopped and started again, under write load: the
// service answers 503 within its store timeout and is not ready; when
// Keycloak is back it serves again without a restart, and nothing that got
// a 204 is lost. The Keycloak keeps its data in PostgreSQL, as in
// production, so that it survives its restart.
func TestKeycloakOutage(t *testing.T) {
	jdbc, dbUser := pgtest.Shared(t).NewJDBCDatabase(t)
	kc := kctest.StartOnPostgres(t, jdbc, dbUser)
	p := startOnKeycloak(t, kc, "--store-timeout", "2s")
	tokens := map[string]string{}
	for range 2 {
		u := kc.NewUser(t)
		tokens[u.ID], _ = kc.Token(t, u, bothScopes)
	}
	var probe string
	for _, tok := range tokens {
		probe = tok
	}
	load := reliability.StartLoad(func() []string { return []string{p.url} }, tokens, 100000, false)
	time.Sleep(500 * time.Millisecond)

	expectOutage := func(what string) {
		t.Helper()
		start := time.Now()
		status, body := call(t, "GET", p.url+"/user/2025-1/attributes", probe, "")
		if status != 503 || !strings.Contains(body, "store-unavailable") {
			t.Fatalf("GET with Keycloak %s: %d %s", what, status, body)
		}
		if d := time.Since(start); d > 4*time.Second {
			t.Fatalf("GET with Keycloak %s took %s", what, d)
		}
		if status, _ := call(t, "GET", p.url+"/health/readiness", "", ""); status != 503 {
			t.Fatalf("readiness with Keycloak %s: %d", what, status)
		}
	}
	waitReady := func(what string) {
		t.Helper()
		t.Logf("ready again %s after Keycloak %s", p.waitReady(t, time.Minute).Round(10*time.Millisecond), what)
	}

	if err := kc.Signal("STOP"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	expectOutage("frozen")
	if err := kc.Signal("CONT"); err != nil {
		t.Fatal(err)
	}
	waitReady("thawed")

	if err := kc.Down(); err != nil {
		t.Fatal(err)
	}
	expectOutage("stopped")
	if _, err := kc.Up(); err != nil {
		t.Fatal(err)
	}
	waitReady("restarted")
	time.Sleep(time.Second) // writers succeed again
	load.Finish()

	load.CheckOutage(t, 4*time.Second)
	n, lost := load.CheckAcked(t, p.url, tokens)
	reliability.Report(t.Logf, reliability.Row{Scenario: "Keycloak frozen (SIGSTOP), then stopped and restarted, under load",
		Answers: load.Answers(), Acked: n, Lost: lost})
}

// Two instances on one Keycloak keep the contract together: concurrent
// merges through both lose nothing, exactly one of racing conditional
// writes wins, and a write through one is read through the other at once.
func TestInstancesShareOneKeycloak(t *testing.T) {
	kc := kctest.Shared(t)
	a, b := startOnKeycloak(t, kc), startOnKeycloak(t, kc)
	u := kc.NewUser(t)
	tok, _ := kc.Token(t, u, bothScopes)
	put := func(p *process, body string, headers ...string) int {
		status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, body, headers...)
		return status
	}

	var wg sync.WaitGroup
	for w := range 16 {
		p := []*process{a, b}[w%2]
		wg.Go(func() {
			for i := range 10 {
				if status := put(p, fmt.Sprintf(`{"w%d_%d":"v"}`, w, i)); status != 204 {
					t.Errorf("writer %d, key %d: %d", w, i, status)
				}
			}
		})
	}
	wg.Wait()
	stored := kc.UserRepresentation(t, u.ID)["attributes"].(map[string]any)
	if len(stored) != 160 {
		t.Fatalf("Keycloak kept %d of 160 concurrent merges through two instances", len(stored))
	}

	resp, err := http.DefaultClient.Do(mustRequest(t, "GET", b.url+"/user/2025-1/attributes", tok, ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	etag := resp.Header.Get("ETag")
	var won atomic.Int32
	for r := range 10 {
		p := []*process{a, b}[r%2]
		wg.Go(func() {
			switch status := put(p, fmt.Sprintf(`{"winner":"%d"}`, r), "If-Match", etag); status {
			case 204:
				won.Add(1)
			case 412:
			default:
				t.Errorf("racing conditional PUT: %d", status)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d of 10 racing conditional PUTs through two instances won, want exactly 1", won.Load())
	}

	stale := 0
	for i := range 20 {
		writer, reader := a, b
		if i%2 == 1 {
			writer, reader = b, a
		}
		if status := put(writer, fmt.Sprintf(`{"n":"%d"}`, i)); status != 204 {
			t.Fatalf("PUT %d: %d", i, status)
		}
		if _, body := call(t, "GET", reader.url+"/user/2025-1/attributes", tok, ""); !strings.Contains(body, fmt.Sprintf(`"n":"%d"`, i)) {
			stale++
		}
	}
	if stale != 0 {
		t.Fatalf("%d of 20 reads through the other instance right after a PUT were stale", stale)
	}
}

// Without the extension, the operator says so, and hears what it costs.
func TestKeycloakAdminAPIOnly(t *testing.T) {
	kc := kctest.Shared(t)
	p := startOnKeycloak(t, kc, "--keycloak-admin-api-only")
	waitForLog(t, p, "lose each other's changes")
	u := kc.NewUser(t)
	tok, _ := kc.Token(t, u, bothScopes)
	if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"a":"1"}`); status != 204 {
		t.Fatalf("PUT: %d %s", status, body)
	}
	if status, body := call(t, "GET", p.url+"/user/2025-1/attributes", tok, ""); status != 200 || body != `{"a":"1"}` {
		t.Fatalf("GET: %d %s", status, body)
	}
}

// The admin API on Keycloak: a backend's service account (its tokens
// marked by a claim, since Keycloak gives them a subject) reads and merges
// any user's attributes; an unknown user is 404; a user's token never gets
// in. The Keycloak store keeps no history and delivers no events, and says
// so: the history route answers 501, and serve refuses event sinks.
func TestKeycloakAdminAPI(t *testing.T) {
	kc := kctest.Shared(t)
	p := startOnKeycloak(t, kc, "--admin-service-account-claim", "userattrs_service_account", "--readonly-attributes", "plan")
	u := kc.NewUser(t)
	backend := kc.BackendToken(t, "user:attributes:admin")
	path := p.url + "/admin/users/" + u.ID + "/attributes"
	if status, body := call(t, "PUT", path, backend, `{"plan":"pro","tos_accepted":"v1"}`); status != 204 {
		t.Fatalf("admin PUT: %d %s", status, body)
	}
	if status, body := call(t, "GET", path, backend, ""); status != 200 || body != `{"plan":"pro","tos_accepted":"v1"}` {
		t.Fatalf("admin GET: %d %s", status, body)
	}
	user, _ := kc.Token(t, u, "user:attributes:read", "user:attributes:write")
	if status, body := call(t, "GET", p.url+"/user/2025-1/attributes", user, ""); status != 200 || body != `{"plan":"pro","tos_accepted":"v1"}` {
		t.Fatalf("the user reads: %d %s", status, body)
	}
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", user, `{"plan":"free"}`); status != 403 {
		t.Fatalf("the user writes a read-only attribute: %d", status)
	}
	if status, body := call(t, "GET", p.url+"/admin/users/00000000-0000-4000-8000-000000000000/attributes", backend, ""); status != 404 || !strings.Contains(body, "user-not-found") {
		t.Fatalf("unknown user: %d %s", status, body)
	}
	if status, body := call(t, "GET", path, user, ""); status != 403 || !strings.Contains(body, "service-account-required") {
		t.Fatalf("a user's token on the admin API: %d %s", status, body)
	}
	if status, _ := call(t, "GET", p.url+"/user/2025-1/attributes", backend, ""); status != 401 {
		t.Fatalf("a service account's token on the self-service route: %d", status)
	}
	if status, body := call(t, "GET", path+"/history", backend, ""); status != 501 || !strings.Contains(body, "history-not-kept") {
		t.Fatalf("history on Keycloak: %d %s", status, body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := run(ctx, []string{"serve", "--addr", "127.0.0.1:0", "--store", "keycloak", "--keycloak-url", kc.URL,
		"--keycloak-realm", kc.Realm, "--keycloak-client-id", kc.ClientID, "--oidc-issuer", kc.Issuer(), "--oidc-audience", kc.Audience,
		"--events-webhook-url", "http://127.0.0.1:9/events"}, func(name string) string {
		switch name {
		case "USERATTRS_KEYCLOAK_CLIENT_SECRET":
			return kc.ClientSecret
		case "USERATTRS_EVENTS_WEBHOOK_SECRET":
			return webhookSecret
		}
		return ""
	}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "cannot deliver change events") {
		t.Fatalf("serve on Keycloak with a webhook: %v", err)
	}
}

// profileCase is one attribute under one user-profile configuration, and
// what each route may do with it.
type profileCase struct {
	name      string
	attribute string
	policy    string // the realm's unmanaged-attribute policy; "" keeps none
	userSees  bool
	userPUT   int
	adminSees bool
	adminPUT  int
}

// The realm's user profile decides what a user may see and change through
// the self-service routes, as Keycloak's own Account API does, and what a
// backend may through the admin API, as Keycloak's Admin API does: through
// the extension and through the Admin API alike. Each case seeds the
// attribute in Keycloak, reads and writes it through both routes, and then
// reads Keycloak itself.
func TestKeycloakUserProfilePermissions(t *testing.T) {
	kc := kctest.Shared(t)
	managed := func(name string, view, edit []string) map[string]any {
		return map[string]any{"name": name, "displayName": name, "multivalued": false,
			"permissions": map[string]any{"view": view, "edit": edit}}
	}
	both, admin := []string{"admin", "user"}, []string{"admin"}
	profile := func(policy string) func(map[string]any) {
		return func(p map[string]any) {
			var attrs []any
			for _, a := range p["attributes"].([]any) {
				if !strings.HasPrefix(a.(map[string]any)["name"].(string), "up_") {
					attrs = append(attrs, a)
				}
			}
			p["attributes"] = append(attrs, managed("up_shared", both, both),
				managed("up_tier", both, admin), managed("up_fraud_score", admin, admin))
			p["unmanagedAttributePolicy"] = policy
		}
	}
	cases := []profileCase{
		{"view user+admin, edit user+admin", "up_shared", "ENABLED", true, 204, true, 204},
		{"view user+admin, edit admin", "up_tier", "ENABLED", true, 403, true, 204},
		{"view admin, edit admin", "up_fraud_score", "ENABLED", false, 403, true, 204},
		{"unmanaged, ENABLED", "up_note", "ENABLED", true, 204, true, 204},
		{"unmanaged, ADMIN_EDIT", "up_note", "ADMIN_EDIT", false, 403, true, 204},
		{"unmanaged, ADMIN_VIEW", "up_note", "ADMIN_VIEW", false, 403, true, 403},
		{"unmanaged, none kept", "up_note", "", false, 422, false, 422},
	}
	for _, mode := range []struct {
		name  string
		flags []string
	}{{"extension", nil}, {"admin API only", []string{"--keycloak-admin-api-only"}}} {
		t.Run(mode.name, func(t *testing.T) {
			// The Admin-API-only mode reads the realm's profile again after
			// --read-cache-ttl.
			const ttl = 300 * time.Millisecond
			p := startOnKeycloak(t, kc, append([]string{"--admin-service-account-claim", "userattrs_service_account",
				"--read-cache-ttl", ttl.String()}, mode.flags...)...)
			backend := kc.BackendToken(t, "user:attributes:admin")
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					kc.EditProfile(t, profile("ENABLED"))
					u := kc.NewUser(t)
					kc.SetAttributes(t, u.ID, map[string][]string{tc.attribute: {"seed"}, "up_other": {"o"}})
					kc.EditProfile(t, profile(tc.policy))
					time.Sleep(ttl + 100*time.Millisecond)
					user, _ := kc.Token(t, u, bothScopes)
					self, adminPath := p.url+"/user/2025-1/attributes", p.url+"/admin/users/"+u.ID+"/attributes"
					got := checkProfileCase(t, tc, user, backend, self, adminPath)
					// Keycloak itself, read with the realm's default policy
					// so that the Admin API shows every attribute.
					kc.EditProfile(t, profile("ENABLED"))
					attrs, _ := kc.UserRepresentation(t, u.ID)["attributes"].(map[string]any)
					if v, _ := json.Marshal(attrs[tc.attribute]); string(v) != `["`+got+`"]` {
						t.Errorf("Keycloak holds %s = %s, want %q", tc.attribute, v, got)
					}
					if v, _ := json.Marshal(attrs["up_other"]); string(v) != `["o"]` {
						t.Errorf("Keycloak holds up_other = %s: a merge touched another attribute", v)
					}
					t.Logf("%-34s self GET %-5v PUT %d | admin GET %-5v PUT %d | Keycloak: %s",
						tc.name, tc.userSees, tc.userPUT, tc.adminSees, tc.adminPUT, got)
				})
			}
			// A user's ETag covers what the user sees: an administrator's
			// change of an attribute hidden from the user leaves it, and the
			// user's conditional merge leaves that attribute alone.
			t.Run("ETag over what the user sees", func(t *testing.T) {
				kc.EditProfile(t, profile("ENABLED"))
				time.Sleep(ttl + 100*time.Millisecond)
				u := kc.NewUser(t)
				user, _ := kc.Token(t, u, bothScopes)
				self, adminPath := p.url+"/user/2025-1/attributes", p.url+"/admin/users/"+u.ID+"/attributes"
				etag := getETag(t, self, user)
				if status, body := call(t, "PUT", adminPath, backend, `{"up_fraud_score":"97"}`); status != 204 {
					t.Fatalf("admin PUT: %d %s", status, body)
				}
				time.Sleep(ttl + 100*time.Millisecond) // the read cache's entry of the user expires
				if again := getETag(t, self, user); again != etag {
					t.Fatalf("the user's ETag moved with an attribute hidden from them: %s, then %s", etag, again)
				}
				if status, body := call(t, "PUT", self, user, `{"a":"1"}`, "If-Match", etag); status != 204 {
					t.Fatalf("conditional PUT with the user's ETag: %d %s", status, body)
				}
				attrs, _ := json.Marshal(kc.UserRepresentation(t, u.ID)["attributes"])
				if string(attrs) != `{"a":["1"],"up_fraud_score":["97"]}` {
					t.Fatalf("Keycloak holds %s", attrs)
				}
				// Keycloak's own user fields are no attributes of this API.
				for _, field := range []string{"enabled", "emailVerified", "totp", "requiredActions", "federationLink", "createdTimestamp"} {
					if status, body := call(t, "PUT", self, user, `{"`+field+`":"false"}`); status != 403 {
						t.Errorf("PUT of %s: %d %s", field, status, body)
					}
				}
			})
		})
	}
}

// getETag returns the ETag of a GET of url with token.
func getETag(t *testing.T, url, token string) string {
	t.Helper()
	resp, err := http.DefaultClient.Do(mustRequest(t, "GET", url, token, ""))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" {
		t.Fatalf("GET: %d, ETag %q", resp.StatusCode, resp.Header.Get("ETag"))
	}
	return resp.Header.Get("ETag")
}

// checkProfileCase reads and writes tc's attribute through both routes
// and returns the value Keycloak must then hold.
func checkProfileCase(t *testing.T, tc profileCase, user, backend, self, adminPath string) string {
	t.Helper()
	sees := func(body string, value string) bool { return strings.Contains(body, `"`+tc.attribute+`":"`+value+`"`) }
	status, body := call(t, "GET", self, user, "")
	if status != 200 || sees(body, "seed") != tc.userSees {
		t.Errorf("self-service GET: %d %s; want the attribute seen: %v", status, body, tc.userSees)
	}
	want := "seed"
	if status, body := call(t, "PUT", self, user, `{"`+tc.attribute+`":"user"}`); status != tc.userPUT {
		t.Errorf("self-service PUT: %d %s, want %d", status, body, tc.userPUT)
	} else if status == 403 && !strings.Contains(body, `"pointer":"/`+tc.attribute+`"`) {
		t.Errorf("self-service PUT: %s, want the attribute's pointer", body)
	} else if status == 204 {
		want = "user"
	}
	status, body = call(t, "GET", adminPath, backend, "")
	if status != 200 || sees(body, want) != tc.adminSees {
		t.Errorf("admin GET: %d %s; want %s=%s seen: %v", status, body, tc.attribute, want, tc.adminSees)
	}
	if status, body := call(t, "PUT", adminPath, backend, `{"`+tc.attribute+`":"admin"}`); status != tc.adminPUT {
		t.Errorf("admin PUT: %d %s, want %d", status, body, tc.adminPUT)
	} else if status == 204 {
		want = "admin"
	}
	return want
}
