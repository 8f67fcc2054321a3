package keycloak_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/internal/testmain"
	"github.com/userattrs/userattrs/store/conformance"
	"github.com/userattrs/userattrs/store/keycloak"
)

func TestMain(m *testing.M) {
	os.Exit(testmain.Finish(m.Run(), nil))
}

func openStore(t *testing.T, kc *kctest.Keycloak, adminAPIOnly ...bool) *keycloak.Store {
	t.Helper()
	s, err := keycloak.Open(keycloak.Config{URL: kc.URL, Realm: kc.Realm, ClientID: kc.ClientID, ClientSecret: kc.ClientSecret,
		AdminAPIOnly: len(adminAPIOnly) > 0 && adminAPIOnly[0]})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func harness(kc *kctest.Keycloak, adminAPIOnly bool) func(t *testing.T) conformance.Harness {
	return func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			Store:       openStore(t, kc, adminAPIOnly),
			Reopen:      func(t *testing.T) userattrs.Store { return openStore(t, kc, adminAPIOnly) },
			NewUser:     func(t *testing.T) string { return kc.NewUser(t).ID },
			UnknownUser: "00000000-0000-4000-8000-000000000000",
		}
	}
}

// Through the extension: the whole suite, the cross-instance clauses
// included.
func TestConformance(t *testing.T) {
	conformance.RunTests(t, harness(kctest.Shared(t), false))
}

// Through the Admin API alone, as operators without the extension run it:
// atomic within one store value, which is all it declares.
func TestConformanceAdminAPIOnly(t *testing.T) {
	conformance.RunTests(t, harness(kctest.Shared(t), true))
}

// Production Keycloak keeps its data in a real database, where row locks
// behave otherwise than in the in-memory one: the suite again, on a
// Keycloak on PostgreSQL.
func TestConformanceOnPostgres(t *testing.T) {
	jdbc, user := pgtest.Shared(t).NewJDBCDatabase(t)
	conformance.RunTests(t, harness(kctest.StartOnPostgres(t, jdbc, user), false))
}

// An erasure removes the user's attributes through the extension and
// leaves the user, with their profile fields: deleting users is Keycloak's
// business.
func TestErasureKeepsTheUser(t *testing.T) {
	kc := kctest.Shared(t)
	s := openStore(t, kc)
	u := kc.NewUser(t)
	kc.SetAttributes(t, u.ID, map[string][]string{"phone": {"+33 6 00 00 00 01"}, "tos_accepted": {"true"}})
	before := kc.UserRepresentation(t, u.ID)
	svc := userattrs.NewService(s, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits})
	if err := svc.Erase(context.Background(), u.ID); err != nil {
		t.Fatal(err)
	}
	after := kc.UserRepresentation(t, u.ID)
	if after["username"] != before["username"] || after["email"] != before["email"] || after["firstName"] != before["firstName"] {
		t.Fatalf("the profile changed: %v, was %v", after, before)
	}
	if attrs, _ := after["attributes"].(map[string]any); attrs["phone"] != nil || attrs["tos_accepted"] != nil {
		t.Fatalf("attributes after the erasure: %v", attrs)
	}
	view, err := svc.AdminGet(context.Background(), u.ID)
	if err != nil || len(view.Attributes()) != 0 {
		t.Fatalf("after the erasure: %v, %v", view, err)
	}
}

// A merge writes the attributes onto the Keycloak user and leaves the
// profile fields, which a Keycloak PUT would otherwise wipe, untouched.
func TestMergeKeepsTheProfile(t *testing.T) {
	kc := kctest.Shared(t)
	s := openStore(t, kc)
	u := kc.NewUser(t)
	before := kc.UserRepresentation(t, u.ID)
	svc := userattrs.NewService(s, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits})
	err := svc.Merge(context.Background(), u.ID, userattrs.Patch{
		{Key: "referred", Values: []string{"false"}, BadIndex: -1},
		{Key: "tos_accepted", Values: []string{"true"}, BadIndex: -1},
	}, userattrs.Precondition{})
	if err != nil {
		t.Fatal(err)
	}
	after := kc.UserRepresentation(t, u.ID)
	for _, f := range []string{"username", "email", "firstName", "lastName", "emailVerified", "enabled"} {
		if after[f] != before[f] || after[f] == nil {
			t.Errorf("%s: %v before, %v after", f, before[f], after[f])
		}
	}
	attrs, _ := json.Marshal(after["attributes"])
	if string(attrs) != `{"referred":["false"],"tos_accepted":["true"]}` {
		t.Errorf("attributes in Keycloak: %s", attrs)
	}
}

// setPolicy sets the realm's unmanaged attribute policy ("" for none) and
// restores it when the test ends.
func setPolicy(t *testing.T, kc *kctest.Keycloak, policy string) {
	t.Helper()
	kc.EditProfile(t, func(profile map[string]any) { profile["unmanagedAttributePolicy"] = policy })
}

// A realm that keeps no unmanaged attributes answers a write of one with
// 204 and drops it: the store must report an error, and readiness must
// fail.
func TestDiscardingRealm(t *testing.T) {
	kc := kctest.Shared(t)
	s := openStore(t, kc)
	u := kc.NewUser(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping with attributes enabled: %v", err)
	}
	setPolicy(t, kc, "")
	for _, s := range []*keycloak.Store{s, openStore(t, kc, true)} {
		err := s.Update(context.Background(), u.ID, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			return userattrs.Attributes{"tos_accepted": {"true"}}, nil
		})
		var invalid *userattrs.InvalidError
		if err == nil || (!strings.Contains(err.Error(), "unmanaged") && !(errors.As(err, &invalid) && strings.Contains(invalid.Violations[0].Detail, "unmanaged"))) {
			t.Fatalf("write to a realm that discards it: %v", err)
		}
	}
	if got := kc.UserRepresentation(t, u.ID)["attributes"]; got != nil {
		t.Fatalf("a refused write changed the user: %v", got)
	}
	if err := s.Ping(context.Background()); err == nil || !strings.Contains(err.Error(), "unmanaged") {
		t.Fatalf("Ping with attributes discarded: %v", err)
	}
}

func TestLinkedProviders(t *testing.T) {
	kc := kctest.Shared(t)
	s := openStore(t, kc)
	u := kc.NewUser(t)
	got, err := s.LinkedProviders(context.Background(), u.ID)
	if err != nil || len(got) != 0 {
		t.Fatalf("before linking: %v %v", got, err)
	}
	status, body := kc.Admin(t, "POST", "/users/"+u.ID+"/federated-identity/"+kc.IDPAlias,
		map[string]string{"identityProvider": kc.IDPAlias, "userId": "ext-" + u.ID, "userName": u.Username})
	if status != 204 {
		t.Fatalf("link: %d %s", status, body)
	}
	got, err = s.LinkedProviders(context.Background(), u.ID)
	if err != nil || len(got) != 1 || got[0] != kc.IDPAlias {
		t.Fatalf("after linking: %v %v", got, err)
	}
	if _, err := s.LinkedProviders(context.Background(), "00000000-0000-4000-8000-000000000000"); !errors.Is(err, userattrs.ErrUserNotFound) {
		t.Fatalf("unknown user: %v", err)
	}
}

// A Keycloak that does not answer is ErrUnavailable within the timeout.
func TestUnreachable(t *testing.T) {
	s, err := keycloak.Open(keycloak.Config{URL: "http://127.0.0.1:1", Realm: "r", ClientID: "c", ClientSecret: "x", Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := s.Get(context.Background(), "00000000-0000-4000-8000-000000000000"); !errors.Is(err, userattrs.ErrUnavailable) {
		t.Fatalf("Get: %v", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, userattrs.ErrUnavailable) || strings.Contains(err.Error(), "x@") {
		t.Fatalf("Ping: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}

// A subject that is no Keycloak user id never reaches Keycloak: "profile"
// or "count" would name other Admin API resources.
func TestSubjectsThatAreNoUserIDs(t *testing.T) {
	s, err := keycloak.Open(keycloak.Config{URL: "http://127.0.0.1:1", Realm: "r", ClientID: "c", ClientSecret: "x"})
	if err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"profile", "count", ".", "..", "../users", "a/b", "00000000-0000-4000-8000-00000000000", "ABCDEF00-0000-4000-8000-000000000000"} {
		if _, err := s.Get(context.Background(), sub); !errors.Is(err, userattrs.ErrUserNotFound) {
			t.Errorf("Get(%q): %v", sub, err)
		}
		if err := s.Update(context.Background(), sub, func(a userattrs.Attributes) (userattrs.Attributes, error) { return a, nil }); !errors.Is(err, userattrs.ErrUserNotFound) {
			t.Errorf("Update(%q): %v", sub, err)
		}
		if _, err := s.LinkedProviders(context.Background(), sub); !errors.Is(err, userattrs.ErrUserNotFound) {
			t.Errorf("LinkedProviders(%q): %v", sub, err)
		}
	}
}

// A value a managed attribute's validator refuses is a 422 with the
// attribute named, and changes nothing; Keycloak's admin events record the
// writes the extension makes.
func TestExtensionRespectsTheUserProfile(t *testing.T) {
	kc := kctest.Shared(t)
	s := openStore(t, kc)
	u := kc.NewUser(t)
	kc.EditProfile(t, func(profile map[string]any) {
		profile["attributes"] = append(profile["attributes"].([]any), map[string]any{
			"name": "postcode", "displayName": "Postcode",
			"validations": map[string]any{"pattern": map[string]any{"pattern": "^[0-9]{5}$", "error-message": "error-postcode"}},
			"permissions": map[string]any{"view": []string{"admin", "user"}, "edit": []string{"admin", "user"}},
		})
	})
	set := func(value string) error {
		return s.Update(context.Background(), u.ID, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			next := cur.Clone()
			next["postcode"] = []string{value}
			next["other"] = []string{"x"}
			return next, nil
		})
	}
	err := set("not-a-postcode")
	var invalid *userattrs.InvalidError
	if !errors.As(err, &invalid) || len(invalid.Violations) != 1 || invalid.Violations[0].Key != "postcode" {
		t.Fatalf("a value the profile refuses: %v", err)
	}
	if got, _ := s.Get(context.Background(), u.ID); len(got) != 0 {
		t.Fatalf("a refused merge changed %v", got)
	}
	if err := set("12345"); err != nil {
		t.Fatalf("a value the profile takes: %v", err)
	}

	kc.Admin(t, "PUT", "", map[string]any{"adminEventsEnabled": true, "adminEventsDetailsEnabled": true})
	if err := set("54321"); err != nil {
		t.Fatal(err)
	}
	status, body := kc.Admin(t, "GET", "/admin-events?resourceTypes=USER&operationTypes=UPDATE&resourcePath=users/"+u.ID, nil)
	if status != 200 || !strings.Contains(string(body), u.ID) {
		t.Fatalf("no admin event of the write: %d %s", status, body)
	}
	// It names what changed, never a value: an erasure cannot reach
	// Keycloak's admin events.
	if !strings.Contains(string(body), "postcode") || strings.Contains(string(body), "54321") {
		t.Fatalf("the admin event of the write: %s", body)
	}
}

// The extension serves only callers allowed to manage the realm's users,
// and only for a caller they name: a user or an administrator.
func TestExtensionRefusesOthers(t *testing.T) {
	kc := kctest.Shared(t)
	u := kc.NewUser(t)
	userToken, _ := kc.Token(t, u, "user:attributes:read")
	service, err := kc.ServiceToken()
	if err != nil {
		t.Fatal(err)
	}
	base := kc.URL + "/realms/" + kc.Realm + "/userattrs/users/" + u.ID
	for _, tc := range []struct {
		name, token, query string
		status             int
	}{
		{"no token", "", "?caller=user", 401}, {"a user's token", userToken, "?caller=user", 403},
		{"garbage", "not-a-token", "?caller=admin", 401},
		{"the service account for a user", service, "?caller=user", 200},
		{"the service account for an administrator", service, "?caller=admin", 200},
		{"the service account for no one", service, "", 400}, {"the service account for another", service, "?caller=root", 400},
	} {
		for _, method := range []string{"GET", "PUT"} {
			req, _ := http.NewRequest(method, base+tc.query, strings.NewReader(`{"version":"x","set":{"a":["1"]}}`))
			req.Header.Set("Content-Type", "application/json")
			if tc.token != "" {
				req.Header.Set("Authorization", "Bearer "+tc.token)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := tc.status
			if method == "PUT" && want == 200 {
				want = 409 // the version "x" is stale
			}
			if resp.StatusCode != want {
				t.Errorf("%s %s: %d, want %d", tc.name, method, resp.StatusCode, want)
			}
		}
	}
	if got := kc.UserRepresentation(t, u.ID)["attributes"]; got != nil {
		t.Fatalf("a refused caller changed the user: %v", got)
	}
}

// A store starts a merge from the attributes it last saw, but decides
// nothing on them: another instance's write in between leads neither to a
// merge skipped as changing nothing nor to a refusal the current
// attributes would not earn.
func TestStaleHintsDecideNothing(t *testing.T) {
	kc := kctest.Shared(t)
	a, b := openStore(t, kc), openStore(t, kc)
	u := kc.NewUser(t)
	set := func(s *keycloak.Store, value string) {
		t.Helper()
		if err := s.Update(context.Background(), u.ID, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
			next := cur.Clone()
			next["k"] = []string{value}
			return next, nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set(a, "1") // a remembers k=1
	set(b, "2")
	set(a, "1") // a's memory says this changes nothing; it does
	if got, _ := b.Get(context.Background(), u.ID); !slices.Equal(got["k"], []string{"1"}) {
		t.Fatalf("a merge judged on a stale memory was skipped: k=%v", got["k"])
	}
	set(b, "3")
	err := a.Update(context.Background(), u.ID, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
		if !slices.Equal(cur["k"], []string{"3"}) {
			return nil, userattrs.ErrPreconditionFailed
		}
		next := cur.Clone()
		next["seen"] = []string{"3"}
		return next, nil
	})
	if err != nil {
		t.Fatalf("a refusal earned only by a stale memory: %v", err)
	}
}
