package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/client"
	"github.com/userattrs/userattrs/internal/kctest"
	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/store/postgres"
	"github.com/userattrs/userattrs/store/sqlite"
)

// On Keycloak, the CLI erases a user through the admin API with a service
// account's token it gets by client credentials: the attributes go, the
// user and their profile stay; an unknown user is 404.
func TestKeycloakErasure(t *testing.T) {
	kc := kctest.Shared(t)
	p := startOnKeycloak(t, kc, "--admin-service-account-claim", "userattrs_service_account")
	u := kc.NewUser(t)
	kc.SetAttributes(t, u.ID, map[string][]string{"phone": {"+33 6 00 00 00 09"}, "tos_accepted": {"true"}})
	before := kc.UserRepresentation(t, u.ID)
	getenv := func(name string) string {
		if name == "USERATTRS_CLIENT_SECRET" {
			return kc.BackendClientSecret
		}
		return ""
	}
	tokenURL := kc.Issuer() + "/protocol/openid-connect/token"
	cli := func(args ...string) (string, error) {
		var out bytes.Buffer
		err := run(context.Background(), append(args, "--url", p.url, "--token-url", tokenURL, "--client-id", kc.BackendClientID,
			"--scope", "user:attributes:admin"), getenv, &out, &out)
		return out.String(), err
	}
	if out, err := cli("export", "--user", u.ID); err != nil || !strings.Contains(out, `"phone"`) {
		t.Fatalf("export: %v %s", err, out)
	}
	if out, err := cli("erase", "--user", u.ID); err != nil {
		t.Fatalf("erase: %v %s", err, out)
	}
	after := kc.UserRepresentation(t, u.ID)
	for _, f := range []string{"id", "username", "email", "firstName", "lastName"} {
		if after[f] != before[f] {
			t.Errorf("%s: %v before the erasure, %v after", f, before[f], after[f])
		}
	}
	if attrs, _ := after["attributes"].(map[string]any); len(attrs) != 0 {
		t.Fatalf("attributes in Keycloak after the erasure: %v", attrs)
	}
	if _, err := cli("erase", "--user", "00000000-0000-4000-8000-000000000000"); !errors.Is(err, client.ErrUserNotFound) {
		t.Fatalf("erasing an unknown user: %v", err)
	}
}

// reconcileFixture is a SQLite store holding the attributes of Keycloak
// users, some of whom are then deleted in Keycloak.
type reconcileFixture struct {
	kc            *kctest.Keycloak
	spec          string // --store
	kept, deleted []string
}

// openStore opens the store --store names, as the commands do.
func openStore(t *testing.T, spec string) userattrs.Store {
	t.Helper()
	var st userattrs.Store
	var err error
	if path, ok := strings.CutPrefix(spec, "sqlite:"); ok {
		st, err = sqlite.Open(context.Background(), sqlite.Config{Path: path})
	} else {
		st, err = postgres.Open(context.Background(), postgres.Config{URL: spec, Migrate: true})
	}
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func newReconcileFixture(t *testing.T, kc *kctest.Keycloak, spec string, kept, deleted int) *reconcileFixture {
	f := &reconcileFixture{kc: kc, spec: spec}
	st := openStore(t, spec)
	svc := userattrs.NewService(st, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits})
	for i := range kept + deleted {
		u := kc.NewUser(t)
		if err := svc.Merge(context.Background(), u.ID, userattrs.Patch{{Key: "phone", Values: []string{"+33 6 " + u.ID[:8]}}},
			userattrs.Precondition{}); err != nil {
			t.Fatal(err)
		}
		if i < kept {
			f.kept = append(f.kept, u.ID)
			continue
		}
		f.deleted = append(f.deleted, u.ID)
		if status, body := kc.Admin(t, "DELETE", "/users/"+u.ID, nil); status != 204 {
			t.Fatalf("delete a user in Keycloak: %d %s", status, body)
		}
	}
	st.Close()
	slices.Sort(f.deleted)
	return f
}

func (f *reconcileFixture) keycloakFlags() []string {
	return []string{"--keycloak-url", f.kc.URL, "--keycloak-realm", f.kc.Realm, "--keycloak-client-id", f.kc.ClientID}
}

func (f *reconcileFixture) getenv(name string) string {
	if name == "USERATTRS_KEYCLOAK_CLIENT_SECRET" {
		return f.kc.ClientSecret
	}
	return ""
}

// export reads what the store keeps of user.
func (f *reconcileFixture) export(t *testing.T, user string) *userattrs.Export {
	t.Helper()
	st := openStore(t, f.spec)
	defer st.Close()
	x, err := userattrs.NewService(st, userattrs.ServiceConfig{}).Export(context.Background(), user)
	if err != nil {
		t.Fatal(err)
	}
	return x
}

// userattrs reconcile against the real Keycloak: users written through the
// SQL store, some deleted in Keycloak; the dry run lists those, on the
// extension and on the Admin API alone, and erases nothing; a bound below
// their number stops it; --apply erases them, and only them.
func TestReconcileAgainstKeycloak(t *testing.T) {
	kc := kctest.Shared(t)
	t.Run("SQLite", func(t *testing.T) {
		testReconcile(t, newReconcileFixture(t, kc, "sqlite:"+filepath.Join(t.TempDir(), "userattrs.db"), 3, 2))
	})
	t.Run("PostgreSQL", func(t *testing.T) {
		testReconcile(t, newReconcileFixture(t, kc, pgtest.Shared(t).NewDatabase(t), 3, 2))
	})
}

func testReconcile(t *testing.T, f *reconcileFixture) {
	reconcile := func(extra ...string) (string, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append(append([]string{"reconcile", "--store", f.spec}, f.keycloakFlags()...), extra...),
			f.getenv, &stdout, &stderr)
		return stdout.String(), err
	}
	for _, mode := range [][]string{nil, {"--keycloak-admin-api-only"}} {
		out, err := reconcile(mode...)
		if listed := strings.Fields(out); err != nil || !slices.Equal(listed, f.deleted) {
			t.Fatalf("dry run %v: %v, listed %q, want %q", mode, err, listed, f.deleted)
		}
	}
	if x := f.export(t, f.deleted[0]); len(x.Attributes) != 1 {
		t.Fatalf("the dry run erased: %+v", x)
	}
	if _, err := reconcile("--apply", "--max-erasures", "1"); !errors.Is(err, userattrs.ErrTooManyUnknown) {
		t.Fatalf("past --max-erasures: %v", err)
	}
	if x := f.export(t, f.deleted[0]); len(x.Attributes) != 1 {
		t.Fatalf("a reconciliation past its bound erased: %+v", x)
	}
	if _, err := reconcile("--apply"); err != nil {
		t.Fatal(err)
	}
	for _, u := range f.deleted {
		x := f.export(t, u)
		if len(x.Attributes) != 0 || len(x.History) != 0 || len(x.Erasures) != 1 || x.Erasures[0].Actor.ID != "userattrs-reconcile" {
			t.Fatalf("a deleted user after --apply: %+v", x)
		}
	}
	for _, u := range f.kept {
		if x := f.export(t, u); len(x.Attributes) != 1 || len(x.Erasures) != 0 {
			t.Fatalf("a user Keycloak knows after --apply: %+v", x)
		}
	}
	if out, err := reconcile(); err != nil || out != "" {
		t.Fatalf("after --apply: %v, listed %q", err, out)
	}
}

// serve --reconcile-interval erases, by itself, the users deleted in
// Keycloak since.
func TestServeReconciles(t *testing.T) {
	kc := kctest.Shared(t)
	f := newReconcileFixture(t, kc, "sqlite:"+filepath.Join(t.TempDir(), "userattrs.db"), 1, 1)
	dir := t.TempDir()
	p := startServe(t, dir, []string{"USERATTRS_KEYCLOAK_CLIENT_SECRET=" + kc.ClientSecret},
		append([]string{"--dev", "--data-dir", dir, "--store", f.spec, "--reconcile-interval", "300ms"}, f.keycloakFlags()...)...)
	admin := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)
	c, _ := newAPIClient(t, p.url, admin, client.Config{})
	deadline := time.Now().Add(30 * time.Second)
	for {
		x, err := c.Export(context.Background(), f.deleted[0])
		if err != nil {
			t.Fatal(err)
		}
		if len(x.Erasures) == 1 && len(x.Attributes) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the deleted user is still there after 30s\n%s", p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	if x, err := c.Export(context.Background(), f.kept[0]); err != nil || len(x.Attributes) != 1 {
		t.Fatalf("the kept user: %+v %v", x, err)
	}
	if metric(t, p, `userattrs_reconcile_runs_total{result="done"}`) < 1 || metric(t, p, "userattrs_reconcile_erased_total") != 1 {
		t.Fatalf("metrics:\n%s", p.logs.String())
	}
}

// userattrs export and erase on the store itself, with the service
// stopped: the export marks what serve hides, the erasure leaves its
// record (naming the command) and, with --events, its queued event.
func TestExportAndEraseOnTheStore(t *testing.T) {
	spec := "sqlite:" + filepath.Join(t.TempDir(), "userattrs.db")
	st := openStore(t, spec)
	svc := userattrs.NewService(st, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits})
	if err := svc.Merge(context.Background(), "carol", userattrs.Patch{{Key: "secret_score", Values: []string{"9"}},
		{Key: "plan", Values: []string{"pro"}}}, userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	st.Close()
	cli := func(args ...string) (userattrs.Export, error) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append(args, "--store", spec, "--user", "carol"), func(string) string { return "" }, &stdout, &stderr)
		var x userattrs.Export
		if err == nil && stdout.Len() > 0 {
			err = json.Unmarshal(stdout.Bytes(), &x)
		}
		return x, err
	}
	x, err := cli("export", "--hidden-attributes", "secret_*")
	if err != nil || !x.Attributes["secret_score"].Hidden || x.Attributes["plan"].Hidden || len(x.History) != 1 {
		t.Fatalf("export: %+v %v", x, err)
	}
	if _, err := cli("erase", "--events"); err != nil {
		t.Fatal(err)
	}
	x, err = cli("export")
	if err != nil || len(x.Attributes) != 0 || len(x.History) != 0 || len(x.Erasures) != 1 || x.Erasures[0].Actor.ID != "userattrs-cli" ||
		x.Erasures[0].RequestID == "" || len(x.Pending) != 1 || !x.Pending[0].Erased {
		t.Fatalf("export after the erasure: %+v %v", x, err)
	}
}
