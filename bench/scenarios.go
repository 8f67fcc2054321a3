package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/bench/workload"
	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/internal/pgtest"
)

const limitTarget = "limit: bare net/http"

// The true limits of two rows: a PUT acknowledged only once on disk, and a
// first-seen GET of a user outside every cache (see bench/bare).
const (
	durableTarget    = "limit: durable write"
	verifyReadTarget = "limit: verify and read"
)

// attributeTargets are the GET and PUT requests of users, one token each.
// Every user's PUTs alternate between two bodies, so that each one changes
// the attributes and the store really writes.
func attributeTargets(base string, tokens []string) (get, put []vegeta.Target) {
	bodies := [][]byte{
		[]byte(`{"theme":"dark","tos_accepted":"true","referred":"false"}`),
		[]byte(`{"theme":"light","tos_accepted":"true","referred":"false"}`),
	}
	for round := range 2 {
		for _, tok := range tokens {
			h := http.Header{"Authorization": {"Bearer " + tok}}
			if round == 0 {
				get = append(get, vegeta.Target{Method: "GET", URL: base + "/user/2025-1/attributes", Header: h})
			}
			ph := h.Clone()
			ph.Set("Content-Type", "application/json")
			put = append(put, vegeta.Target{Method: "PUT", URL: base + "/user/2024-3/attributes", Header: ph, Body: bodies[round]})
		}
	}
	return get, put
}

func (b *bench) measureLimit() error {
	s, err := b.start(b.bins["bare"], nil)
	if err != nil {
		return err
	}
	defer s.stop()
	get, put := attributeTargets(s.url, make([]string, b.users))
	b.measure(limitTarget, "GET", Scenario{Pattern: limitBodies}, get, nil)
	b.measure(limitTarget, "PUT", Scenario{Pattern: limitBodies}, put, nil)
	if b.stores["sqlite"] {
		// On the disk of the SQLite rows: the benchmark's folder.
		d, err := b.start(b.bins["bare"], nil, "-durable", filepath.Join(b.tmp, "durable.log"))
		if err != nil {
			return err
		}
		_, durablePut := attributeTargets(d.url, make([]string, b.users))
		b.measure(durableTarget, "PUT", Scenario{Pattern: limitBodies}, durablePut, nil)
		d.stop()
	}
	if b.stores["sqlite"] {
		for _, n := range workload.Sizes {
			for i := range get {
				get[i].Header = http.Header{workload.SizeHeader: {strconv.Itoa(n)}}
			}
			b.measure(limitTarget, "GET", Scenario{Attributes: n, Pattern: limitBodies}, get, nil)
		}
	}
	return nil
}

// measureSQL measures userattrs on a SQL store, with development tokens
// that the service verifies like any other JWT: the benchmark of record
// (users of 3 attributes, read and written in turn), then, on SQLite,
// users of every size.
func (b *bench) measureSQL(kind, store string, flags ...string) error {
	s, key, tokens, err := b.startDev(kind, nil, append([]string{"--store", store}, flags...)...)
	if err != nil {
		return err
	}
	defer s.stop()
	target := "userattrs " + kind
	if len(flags) > 0 {
		target += " " + strings.Join(flags, " ")
	}
	record := Scenario{Users: b.users, Attributes: 3, Pattern: roundRobin}
	get, put := attributeTargets(s.url, tokens)
	b.measure(target, "PUT", record, put, s) // PUT first: GET then reads real rows
	b.measure(target, "GET", record, get, s)
	if kind != "sqlite" {
		return nil
	}
	for _, n := range workload.Sizes {
		if err := b.measureSized(s, target, key, n); err != nil {
			return err
		}
	}
	return nil
}

// measureEvents measures PUT on SQLite with change events on, to a local
// webhook receiver that takes every event: what the outbox row and its
// delivery cost a merge, beside the row of record without events.
func (b *bench) measureEvents() error {
	var delivered atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()
	err := b.measurePUT("events", "userattrs sqlite, events to a webhook",
		[]string{"USERATTRS_EVENTS_WEBHOOK_SECRET=whsec_YS1zZWNyZXQtb2YtdGhlLWJlbmNobWFyay1ydW5z"}, "--events-webhook-url", receiver.URL)
	b.note("events: %d delivered to the webhook while the PUT rows ran (each PUT changes the user, so each is an event)", delivered.Load())
	return err
}

// measurePUT measures the PUT of the benchmark of record on a SQLite store
// of its own, named name, run with flags: what a setting costs a merge.
func (b *bench) measurePUT(name, target string, env []string, flags ...string) error {
	s, _, tokens, err := b.startDev(name, env, append([]string{"--store", "sqlite:" + filepath.Join(b.tmp, name, "bench.db")}, flags...)...)
	if err != nil {
		return err
	}
	defer s.stop()
	_, put := attributeTargets(s.url, tokens)
	b.measure(target, "PUT", Scenario{Users: b.users, Attributes: 3, Pattern: roundRobin}, put, s)
	return nil
}

// startDev starts serve --dev with flags on a data directory of its own,
// named name, and signs a token for each of the benchmark's users with its
// development key.
func (b *bench) startDev(name string, env []string, flags ...string) (*server, *auth.DevKey, []string, error) {
	dir := filepath.Join(b.tmp, name)
	key, err := auth.LoadOrCreateDevKey(dir)
	if err != nil {
		return nil, nil, nil, err
	}
	tokens, err := signTokens(key, "user", b.users)
	if err != nil {
		return nil, nil, nil, err
	}
	s, err := b.start(b.bins["userattrs"], env, append([]string{"serve", "--dev", "--data-dir", dir}, flags...)...)
	return s, key, tokens, err
}

// signTokens signs a development token for each of n users named
// prefix-NNNN.
func signTokens(key *auth.DevKey, prefix string, n int) ([]string, error) {
	tokens := make([]string, n)
	for i := range tokens {
		var err error
		if tokens[i], err = sign(key, fmt.Sprintf("%s-%04d", prefix, i)); err != nil {
			return nil, err
		}
	}
	return tokens, nil
}

func sign(key *auth.DevKey, user string) (string, error) {
	return key.Sign(auth.TokenRequest{Subject: user, ClientID: "bench",
		Scopes: []string{"user:attributes:read", "user:attributes:write"}, TTL: 2 * time.Hour})
}

// measureSized gives b.users users n attributes each, then measures PUTs
// that change one of them and GETs.
func (b *bench) measureSized(s *server, target string, key *auth.DevKey, n int) error {
	tokens, err := signTokens(key, fmt.Sprintf("sized%d", n), b.users)
	if err != nil {
		return err
	}
	body := workload.SizedBody(n)
	var seed, get, put []vegeta.Target
	for round, value := range []string{"a", "b"} {
		for _, tok := range tokens {
			h := http.Header{"Authorization": {"Bearer " + tok}, "Content-Type": {"application/json"}}
			if round == 0 {
				seed = append(seed, vegeta.Target{Method: "PUT", URL: s.url + "/user/2024-3/attributes", Header: h, Body: body})
				get = append(get, vegeta.Target{Method: "GET", URL: s.url + "/user/2025-1/attributes", Header: h})
			}
			put = append(put, vegeta.Target{Method: "PUT", URL: s.url + "/user/2024-3/attributes", Header: h,
				Body: []byte(`{"onboarding_step_0000":"` + value + `"}`)})
		}
	}
	if m, _ := attack(seed, 32, time.Minute, 0, true); m.Success < 1 {
		return fmt.Errorf("seeding users of %d attributes: %d of %d failed", n, m.Requests-uint64(float64(m.Requests)*m.Success), m.Requests)
	}
	sc := Scenario{Users: b.users, Attributes: n, Pattern: roundRobin}
	b.measure(target, "PUT", sc, put, s)
	b.measure(target, "GET", sc, get, s)
	return nil
}

func (b *bench) measurePostgres() error {
	pg, err := pgtest.Start()
	if err != nil {
		return err
	}
	b.cleanup = append(b.cleanup, pg.Close)
	// Each pool size on a schema of its own, so that every run starts
	// from the same empty table.
	for _, pool := range b.pgPools {
		url, err := pg.CreateSchema()
		if err != nil {
			return err
		}
		if err := b.measureSQL("postgres", url, "--postgres-max-conns", strconv.Itoa(pool)); err != nil {
			return err
		}
	}
	return nil
}

// measureKeycloak measures userattrs on the Keycloak store against what a
// client would call instead: Keycloak's Account API and a direct Admin API
// read of the user.
func (b *bench) measureKeycloak() error {
	kc, err := kctest.Start()
	if err != nil {
		return err
	}
	if kc.CanRestart() { // started here, so stopped here
		b.cleanup = append(b.cleanup, func() { kc.Down() })
	}
	logf("keycloak: creating %d users", b.kcUsers)
	var users []kctest.User
	var tokens []string
	for range b.kcUsers {
		u, err := kc.CreateUser()
		if err != nil {
			return err
		}
		b.cleanup = append(b.cleanup, func() { kc.AdminCall("DELETE", "/users/"+u.ID, nil) })
		tok, _, err := kc.PasswordToken(u, "user:attributes:read", "user:attributes:write")
		if err != nil {
			return err
		}
		users = append(users, u)
		tokens = append(tokens, tok)
	}
	// Keycloak's JVM compiles its hot paths over the first tens of seconds
	// of load: warm it up with both kinds of write and read first, so that
	// the target measured first is not measured cold.
	logf("keycloak: warming up its JVM")
	if err := b.warmKeycloak(kc, tokens); err != nil {
		return err
	}

	// What a client would call instead: Keycloak's Account API, and a
	// direct Admin API read and write (a PUT of the user's whole
	// representation, changed).
	var account []vegeta.Target
	for _, tok := range tokens {
		account = append(account, vegeta.Target{Method: "GET", URL: kc.Issuer() + "/account",
			Header: http.Header{"Authorization": {"Bearer " + tok}, "Accept": {"application/json"}}})
	}
	if err := check(account[0], 200); err != nil {
		return fmt.Errorf("account API: %w", err)
	}
	svcToken, err := kc.ServiceToken()
	if err != nil {
		return err
	}
	var admin []vegeta.Target
	for _, u := range users {
		admin = append(admin, vegeta.Target{Method: "GET", URL: kc.URL + "/admin/realms/" + kc.Realm + "/users/" + u.ID,
			Header: http.Header{"Authorization": {"Bearer " + svcToken}, "Accept": {"application/json"}}})
	}
	if err := check(admin[0], 200); err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	var adminPut []vegeta.Target
	for round, theme := range []string{"dark", "light"} {
		for _, u := range users {
			status, body, err := kc.AdminCall("GET", "/users/"+u.ID, nil)
			if err != nil || status != 200 {
				return fmt.Errorf("admin API: GET user: %d %v", status, err)
			}
			var rep map[string]any
			if err := json.Unmarshal(body, &rep); err != nil {
				return err
			}
			// The attributes the service's PUTs write, so that every GET
			// row reads users of the same 3 attributes.
			rep["attributes"] = map[string][]string{"theme": {theme}, "tos_accepted": {"true"}, "referred": {strconv.FormatBool(round == 1)}}
			raw, _ := json.Marshal(rep)
			adminPut = append(adminPut, vegeta.Target{Method: "PUT", URL: kc.URL + "/admin/realms/" + kc.Realm + "/users/" + u.ID,
				Body: raw, Header: http.Header{"Authorization": {"Bearer " + svcToken}, "Content-Type": {"application/json"}}})
		}
	}
	if err := check(adminPut[0], 204); err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	kcScenario := Scenario{Users: len(tokens), Attributes: 3, Pattern: roundRobin}

	// Through the extension (atomic across instances, no read cache: every
	// GET reads Keycloak, so that a client reads its own writes through any
	// instance), then through the Admin API alone.
	for _, mode := range []struct {
		target string
		flags  []string
	}{
		{"userattrs keycloak", nil},
		{"userattrs keycloak admin-api-only", []string{"--keycloak-admin-api-only"}},
	} {
		s, err := b.startOnKeycloak(kc, mode.flags...)
		if err != nil {
			return err
		}
		get, put := attributeTargets(s.url, tokens)
		// Keycloak's JVM goes on getting faster for minutes: each row
		// through the extension is measured right beside the row of what
		// it replaces, so that neither runs on a warmer JVM.
		b.measure(mode.target, "PUT", kcScenario, put, s)
		if mode.flags == nil {
			b.measure("keycloak admin API user write", "PUT", kcScenario, adminPut, nil)
		}
		b.measure(mode.target, "GET", kcScenario, get, s)
		if mode.flags == nil {
			b.measure("keycloak account API", "GET", kcScenario, account, nil)
		}
		s.stop()
	}
	b.measure("keycloak admin API user read", "GET", kcScenario, admin, nil)
	return nil
}

// check sends one target and wants status: a peer that answers errors
// would be measured fast for the wrong reason.
func check(t vegeta.Target, status int) error {
	req, err := t.Request()
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var body json.RawMessage
	json.NewDecoder(resp.Body).Decode(&body)
	if resp.StatusCode != status {
		return fmt.Errorf("%s %s: %d %s", t.Method, t.URL, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// warmKeycloak loads Keycloak through the service's two paths for a while,
// unmeasured.
func (b *bench) warmKeycloak(kc *kctest.Keycloak, tokens []string) error {
	for _, flags := range [][]string{nil, {"--keycloak-admin-api-only"}} {
		s, err := b.startOnKeycloak(kc, flags...)
		if err != nil {
			return err
		}
		get, put := attributeTargets(s.url, tokens)
		attack(put, 32, 10*time.Second, 0, false)
		attack(get, 32, 5*time.Second, 0, false)
		s.stop()
	}
	return nil
}

// startOnKeycloak runs userattrs on the Keycloak store of kc.
func (b *bench) startOnKeycloak(kc *kctest.Keycloak, flags ...string) (*server, error) {
	return b.start(b.bins["userattrs"], []string{"USERATTRS_KEYCLOAK_CLIENT_SECRET=" + kc.ClientSecret},
		append([]string{"serve", "--store", "keycloak", "--keycloak-url", kc.URL, "--keycloak-realm", kc.Realm,
			"--keycloak-client-id", kc.ClientID, "--oidc-issuer", kc.Issuer(), "--oidc-audience", kc.Audience}, flags...)...)
}
