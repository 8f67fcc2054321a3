package keycloak_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/store/conformance"
	"github.com/userattrs/userattrs/store/keycloak"
)

func TestMain(m *testing.M) { kctest.Main(m) }

func openStore(t *testing.T, kc *kctest.Keycloak) *keycloak.Store {
	t.Helper()
	s, err := keycloak.Open(keycloak.Config{URL: kc.URL, Realm: kc.Realm, ClientID: kc.ClientID, ClientSecret: kc.ClientSecret})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestConformance(t *testing.T) {
	kc := kctest.Shared(t)
	conformance.RunTests(t, func(t *testing.T) conformance.Harness {
		return conformance.Harness{
			Store:       openStore(t, kc),
			NewUser:     func(t *testing.T) string { return kc.NewUser(t).ID },
			UnknownUser: "00000000-0000-4000-8000-000000000000",
		}
	})
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

// setPolicy sets the realm's unmanaged attribute policy and restores it when
// the test ends.
func setPolicy(t *testing.T, kc *kctest.Keycloak, policy string) {
	t.Helper()
	status, body := kc.Admin(t, "GET", "/users/profile", nil)
	var profile map[string]any
	if status != 200 || json.Unmarshal(body, &profile) != nil {
		t.Fatalf("GET profile: %d", status)
	}
	original := profile["unmanagedAttributePolicy"]
	put := func(p any) {
		if p == nil {
			delete(profile, "unmanagedAttributePolicy")
		} else {
			profile["unmanagedAttributePolicy"] = p
		}
		if status, body := kc.Admin(t, "PUT", "/users/profile", profile); status != 200 {
			t.Fatalf("PUT profile: %d %s", status, body)
		}
	}
	put(policy)
	t.Cleanup(func() { put(original) })
}

// A realm that discards unmanaged attributes answers a write with 204 and
// drops it: the store must report an error, and readiness must fail.
func TestDiscardingRealm(t *testing.T) {
	kc := kctest.Shared(t)
	s := openStore(t, kc)
	u := kc.NewUser(t)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping with attributes enabled: %v", err)
	}
	setPolicy(t, kc, "ADMIN_VIEW")
	err := s.Update(context.Background(), u.ID, func(cur userattrs.Attributes) (userattrs.Attributes, error) {
		return userattrs.Attributes{"tos_accepted": {"true"}}, nil
	})
	if err == nil || !strings.Contains(err.Error(), "unmanaged") {
		t.Fatalf("write to a realm that discards it: %v", err)
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
	if _, err := s.Get(context.Background(), "someone"); !errors.Is(err, userattrs.ErrUnavailable) {
		t.Fatalf("Get: %v", err)
	}
	if err := s.Ping(context.Background()); !errors.Is(err, userattrs.ErrUnavailable) || strings.Contains(err.Error(), "x@") {
		t.Fatalf("Ping: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %s", d)
	}
}
