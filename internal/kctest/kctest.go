// Package kctest gives tests a real Keycloak: the one the KEYCLOAK_*
// variables of `scripts/keycloak.sh up` describe, or one it starts with
// that script and stops when the tests end.
package kctest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/xid"

	"github.com/userattrs/userattrs/internal/testutil"
)

// Keycloak is a running Keycloak with the test realm.
type Keycloak struct {
	URL, Realm                   string
	AdminUser, AdminPassword     string
	ClientID, ClientSecret       string // the service account the store uses
	AppClientID, AppClientSecret string // allowed the password grant
	// A backend whose service account calls the admin API; its tokens
	// carry the claim userattrs_service_account.
	BackendClientID, BackendClientSecret string
	IDPAlias                             string
	Audience                             string // of the app client's access tokens
	script                               string
	env                                  []string // of the script: ports, database
	own                                  bool
}

var (
	shared    *Keycloak
	sharedErr error
	once      sync.Once
)

// Shared returns the Keycloak of this test binary, starting it on first
// use. Where it cannot be started (no JDK or Maven) the test is skipped,
// except under CI=true, where it fails.
func Shared(tb testing.TB) *Keycloak {
	tb.Helper()
	once.Do(func() { shared, sharedErr = Start() })
	if sharedErr != nil {
		if os.Getenv("CI") != "true" && strings.Contains(sharedErr.Error(), "no JDK") {
			tb.Skipf("kctest: %v", sharedErr)
		}
		tb.Fatalf("kctest: %v", sharedErr)
	}
	return shared
}

// Main runs the tests of a package that uses Shared and stops the Keycloak
// it started: call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	Cleanup()
	os.Exit(code)
}

// Cleanup stops the Keycloak these tests started, if any.
func Cleanup() {
	if shared != nil && shared.own {
		shared.Down()
	}
}

// Start returns the Keycloak the KEYCLOAK_* variables describe, or starts
// one with scripts/keycloak.sh; Cleanup or Down stops one it started.
func Start() (*Keycloak, error) {
	root, err := testutil.RepoRoot()
	if err != nil {
		return nil, err
	}
	k := &Keycloak{script: filepath.Join(root, "scripts", "keycloak.sh")}
	if os.Getenv("KEYCLOAK_URL") != "" {
		k.load(os.Getenv)
		return k, nil
	}
	// Test binaries run in parallel, and each may stop and restart the
	// Keycloak it started: they take turns holding it, the whole run long.
	// The kernel drops the lock when the process ends, however it ends.
	if err := lockKeycloak(); err != nil {
		return nil, err
	}
	started, err := k.Up()
	if err != nil {
		return nil, err
	}
	if !started && os.Getenv("CI") == "true" {
		// A Keycloak left running would make the tests that stop it skip:
		// in CI, take it over.
		if err := k.Down(); err != nil {
			return nil, err
		}
		if started, err = k.Up(); err != nil {
			return nil, err
		}
	}
	k.own = started
	return k, nil
}

// lockFile is never read: holding it keeps the file open, since an
// unreachable *os.File is closed by its finalizer, releasing the lock.
var lockFile *os.File

func lockKeycloak() error {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "userattrs-keycloak.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return fmt.Errorf("lock Keycloak: %w", err)
	}
	lockFile = f
	return nil
}

// Up starts Keycloak (again) and sets up the realm; it reports whether it
// started it, rather than finding it running.
func (k *Keycloak) Up() (started bool, err error) {
	var stderr bytes.Buffer
	cmd := exec.Command(k.script, "up")
	cmd.Env = append(os.Environ(), k.env...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return false, fmt.Errorf("keycloak.sh up: %w\n%s", err, stderr.String())
	}
	env := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if name, value, ok := strings.Cut(strings.TrimPrefix(sc.Text(), "export "), "="); ok {
			env[name] = value
		}
	}
	k.load(func(name string) string { return env[name] })
	return !strings.Contains(stderr.String(), "already running"), nil
}

// Down stops a Keycloak these tests started.
func (k *Keycloak) Down() error {
	return k.command("down").Run()
}

func (k *Keycloak) command(args ...string) *exec.Cmd {
	cmd := exec.Command(k.script, args...)
	cmd.Env = append(os.Environ(), k.env...)
	return cmd
}

// StartOnPostgres starts a Keycloak of its own, beside the shared one, on
// other ports, keeping its data in the PostgreSQL database of jdbcURL (as
// production Keycloaks do), with the userattrs extension; it stops when the
// test ends.
func StartOnPostgres(tb testing.TB, jdbcURL, username string) *Keycloak {
	tb.Helper()
	root, err := testutil.RepoRoot()
	if err != nil {
		tb.Fatal(err)
	}
	ports := make([]int, 2)
	for i := range ports {
		if ports[i], err = testutil.FreePort(); err != nil {
			tb.Fatal(err)
		}
	}
	k := &Keycloak{script: filepath.Join(root, "scripts", "keycloak.sh"), env: []string{
		fmt.Sprintf("KEYCLOAK_PORT=%d", ports[0]), fmt.Sprintf("KEYCLOAK_MANAGEMENT_PORT=%d", ports[1]),
		"KEYCLOAK_DB_URL=" + jdbcURL, "KEYCLOAK_DB_USERNAME=" + username, "KEYCLOAK_DB_PASSWORD=unused"}}
	if _, err := k.Up(); err != nil {
		tb.Fatalf("kctest: %v", err)
	}
	k.own = true
	tb.Cleanup(func() { k.Down() })
	return k
}

// CanRestart reports whether the tests may stop and start this Keycloak.
func (k *Keycloak) CanRestart() bool { return k.own }

// Signal sends sig (e.g. "STOP", "CONT") to the Keycloak these tests
// started, to freeze and thaw it.
func (k *Keycloak) Signal(sig string) error {
	return k.command("signal", sig).Run()
}

func (k *Keycloak) load(getenv func(string) string) {
	k.URL = getenv("KEYCLOAK_URL")
	k.Realm = getenv("KEYCLOAK_REALM")
	k.AdminUser = getenv("KEYCLOAK_ADMIN_USER")
	k.AdminPassword = getenv("KEYCLOAK_ADMIN_PASSWORD")
	k.ClientID = getenv("KEYCLOAK_CLIENT_ID")
	k.ClientSecret = getenv("KEYCLOAK_CLIENT_SECRET")
	k.AppClientID = getenv("KEYCLOAK_APP_CLIENT_ID")
	k.AppClientSecret = getenv("KEYCLOAK_APP_CLIENT_SECRET")
	k.BackendClientID = getenv("KEYCLOAK_BACKEND_CLIENT_ID")
	k.BackendClientSecret = getenv("KEYCLOAK_BACKEND_CLIENT_SECRET")
	k.IDPAlias = getenv("KEYCLOAK_IDP_ALIAS")
	k.Audience = getenv("KEYCLOAK_AUDIENCE")
}

// Issuer is the issuer of the realm's tokens.
func (k *Keycloak) Issuer() string { return k.URL + "/realms/" + k.Realm }

var client = &http.Client{Timeout: 30 * time.Second}

func (k *Keycloak) tokenRequest(realm string, form url.Values) (map[string]any, error) {
	resp, err := client.PostForm(k.URL+"/realms/"+realm+"/protocol/openid-connect/token", form)
	if err != nil {
		return nil, fmt.Errorf("token: %w", err)
	}
	defer resp.Body.Close()
	var out map[string]any
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || json.Unmarshal(body, &out) != nil {
		return nil, fmt.Errorf("token: %d %s", resp.StatusCode, body)
	}
	return out, nil
}

// AdminToken returns an access token of the bootstrap admin.
func (k *Keycloak) AdminToken() (string, error) {
	out, err := k.tokenRequest("master", url.Values{"grant_type": {"password"}, "client_id": {"admin-cli"},
		"username": {k.AdminUser}, "password": {k.AdminPassword}})
	if err != nil {
		return "", err
	}
	return out["access_token"].(string), nil
}

// BackendToken returns an access token of the backend's service account,
// by client credentials, with the given scopes.
func (k *Keycloak) BackendToken(tb testing.TB, scopes ...string) string {
	tb.Helper()
	out, err := k.tokenRequest(k.Realm, url.Values{"grant_type": {"client_credentials"},
		"client_id": {k.BackendClientID}, "client_secret": {k.BackendClientSecret}, "scope": {strings.Join(scopes, " ")}})
	if err != nil {
		tb.Fatalf("kctest: %v", err)
	}
	return out["access_token"].(string)
}

// ServiceToken returns an access token of the service account, by client
// credentials.
func (k *Keycloak) ServiceToken() (string, error) {
	out, err := k.tokenRequest(k.Realm, url.Values{"grant_type": {"client_credentials"},
		"client_id": {k.ClientID}, "client_secret": {k.ClientSecret}})
	if err != nil {
		return "", err
	}
	return out["access_token"].(string), nil
}

// AdminCall calls the Admin API of the test realm as the bootstrap admin
// and returns the status and body.
func (k *Keycloak) AdminCall(method, path string, body any) (int, []byte, error) {
	tok, err := k.AdminToken()
	if err != nil {
		return 0, nil, err
	}
	var r io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		r = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, k.URL+"/admin/realms/"+k.Realm+path, r)
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("admin %s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, data, nil
}

// Admin is AdminCall for tests.
func (k *Keycloak) Admin(tb testing.TB, method, path string, body any) (int, []byte) {
	tb.Helper()
	status, data, err := k.AdminCall(method, path, body)
	if err != nil {
		tb.Fatalf("kctest: %v", err)
	}
	return status, data
}

// User is a test user in the realm.
type User struct {
	ID, Username, Password string
}

// CreateUser creates a user with a profile (names and email), a password
// and the realm's default roles.
func (k *Keycloak) CreateUser() (User, error) {
	u := User{Username: "user-" + xid.New().String()}
	u.Password = u.Username + "-password"
	status, body, err := k.AdminCall("POST", "/users", map[string]any{
		"username": u.Username, "enabled": true, "emailVerified": true,
		"email": u.Username + "@example.com", "firstName": "First " + u.Username, "lastName": "Last",
		"credentials": []map[string]any{{"type": "password", "value": u.Password, "temporary": false}},
	})
	if err != nil || status != http.StatusCreated {
		return u, fmt.Errorf("create user: %d %s %v", status, body, err)
	}
	status, body, err = k.AdminCall("GET", "/users?exact=true&username="+u.Username, nil)
	var found []struct{ ID string }
	if err != nil || status != 200 || json.Unmarshal(body, &found) != nil || len(found) != 1 {
		return u, fmt.Errorf("find user: %d %s %v", status, body, err)
	}
	u.ID = found[0].ID
	return u, nil
}

// NewUser is CreateUser for tests: it deletes the user when the test ends.
func (k *Keycloak) NewUser(tb testing.TB) User {
	tb.Helper()
	u, err := k.CreateUser()
	if err != nil {
		tb.Fatalf("kctest: %v", err)
	}
	tb.Cleanup(func() { k.Admin(tb, "DELETE", "/users/"+u.ID, nil) })
	return u
}

// PasswordToken returns an access token of the app client for the user,
// with the given scopes, by the password grant; and the refresh token.
func (k *Keycloak) PasswordToken(u User, scopes ...string) (access, refresh string, err error) {
	access, refresh, _, err = k.passwordTokens(u, scopes)
	return access, refresh, err
}

func (k *Keycloak) passwordTokens(u User, scopes []string) (access, refresh, id string, err error) {
	out, err := k.tokenRequest(k.Realm, url.Values{"grant_type": {"password"},
		"client_id": {k.AppClientID}, "client_secret": {k.AppClientSecret},
		"username": {u.Username}, "password": {u.Password}, "scope": {"openid " + strings.Join(scopes, " ")}})
	if err != nil {
		return "", "", "", err
	}
	id, _ = out["id_token"].(string)
	return out["access_token"].(string), out["refresh_token"].(string), id, nil
}

// Token is PasswordToken for tests.
func (k *Keycloak) Token(tb testing.TB, u User, scopes ...string) (access, refresh string) {
	tb.Helper()
	access, refresh, _ = k.Tokens(tb, u, scopes...)
	return access, refresh
}

// Tokens returns the access, refresh and ID token of a sign-in of the
// user to the app client.
func (k *Keycloak) Tokens(tb testing.TB, u User, scopes ...string) (access, refresh, id string) {
	tb.Helper()
	access, refresh, id, err := k.passwordTokens(u, scopes)
	if err != nil {
		tb.Fatalf("kctest: %v", err)
	}
	return access, refresh, id
}

// Logout ends the session of a refresh token, which revokes its access
// tokens for introspection.
func (k *Keycloak) Logout(tb testing.TB, refresh string) {
	tb.Helper()
	resp, err := client.PostForm(k.URL+"/realms/"+k.Realm+"/protocol/openid-connect/logout", url.Values{
		"client_id": {k.AppClientID}, "client_secret": {k.AppClientSecret}, "refresh_token": {refresh}})
	if err != nil {
		tb.Fatalf("kctest: logout: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		tb.Fatalf("kctest: logout: %d", resp.StatusCode)
	}
}

// UserRepresentation reads the user straight from Keycloak's Admin API.
func (k *Keycloak) UserRepresentation(tb testing.TB, id string) map[string]any {
	tb.Helper()
	status, body := k.Admin(tb, "GET", "/users/"+id, nil)
	var rep map[string]any
	if status != 200 || json.Unmarshal(body, &rep) != nil {
		tb.Fatalf("kctest: GET user: %d %s", status, body)
	}
	return rep
}

// EditProfile changes the realm's user-profile configuration with edit,
// which gets it as Keycloak's Admin API answers it, and restores the
// configuration from before when the test ends. An unmanaged-attribute
// policy of "" removes the member: the realm then keeps no unmanaged
// attributes.
func (k *Keycloak) EditProfile(tb testing.TB, edit func(profile map[string]any)) {
	tb.Helper()
	status, body := k.Admin(tb, "GET", "/users/profile", nil)
	var original map[string]any
	if status != 200 || json.Unmarshal(body, &original) != nil {
		tb.Fatalf("kctest: GET profile: %d %s", status, body)
	}
	put := func(profile map[string]any) {
		if profile["unmanagedAttributePolicy"] == "" {
			delete(profile, "unmanagedAttributePolicy")
		}
		if status, body := k.Admin(tb, "PUT", "/users/profile", profile); status != 200 {
			tb.Fatalf("kctest: PUT profile: %d %s", status, body)
		}
	}
	var changed map[string]any
	json.Unmarshal(body, &changed)
	edit(changed)
	put(changed)
	tb.Cleanup(func() { put(original) })
}

// SetAttributes replaces the user's attributes through Keycloak's Admin
// API, as an operator in Keycloak's console would.
func (k *Keycloak) SetAttributes(tb testing.TB, id string, attrs map[string][]string) {
	tb.Helper()
	rep := k.UserRepresentation(tb, id)
	rep["attributes"] = attrs
	if status, body := k.Admin(tb, "PUT", "/users/"+id, rep); status != 204 {
		tb.Fatalf("kctest: PUT user: %d %s", status, body)
	}
}

// Secrets are the client secrets and the admin password of the Keycloak
// this test binary used, if any: what its logs must never hold.
func Secrets() []string {
	if shared == nil {
		return nil
	}
	return []string{shared.ClientSecret, shared.AppClientSecret, shared.BackendClientSecret, shared.AdminPassword}
}
