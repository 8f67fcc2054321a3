package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store/memory"
	"github.com/userattrs/userattrs/store/sqlite"
)

const admin = "user:attributes:admin"

func adminPath(user string) string { return "/admin/users/" + url.PathEscape(user) + "/attributes" }

// Only a service account's token with the admin scope reaches the admin
// routes, and only the admin routes; a user's token never reaches another
// user, whatever scopes it carries.
func TestAdminAccess(t *testing.T) {
	policy, err := userattrs.NewPolicy(userattrs.PolicyConfig{Hidden: []string{"internal_*"}, ReadOnly: []string{"locked_*"}, Reserved: userattrs.DefaultReserved})
	if err != nil {
		t.Fatal(err)
	}
	st := memory.New()
	f := newFixture(t, func(o *options) { o.policy, o.store = policy, st })
	alice := f.token("alice", read, write, admin)
	f.put(f.token("bob", write), `{"bob":"private"}`)
	svc := f.adminToken()
	for _, path := range []string{adminPath("bob"), adminPath("alice"), adminPath("bob") + "/history"} {
		f.do("GET", path, "", "Authorization", "Bearer "+alice).errors(t, 403, "service-account-required")
	}
	f.do("PUT", adminPath("bob"), `{"bob":"mallory"}`, "Authorization", "Bearer "+alice, "Content-Type", "application/json").
		errors(t, 403, "service-account-required")
	f.do("GET", adminPath("bob"), "", "Authorization", "Bearer "+f.clientToken("backend", "backend", read, write)).
		errors(t, 403, "insufficient-scope")
	// A service account's token is no user's.
	f.get(svc).errors(t, 401, "invalid-token")

	// Read-only for clients, writable through the admin API; hidden for
	// both.
	f.put(alice, `{"locked_plan":"pro"}`).errors(t, 403, "attribute-read-only")
	put := func(body string) response {
		return f.do("PUT", adminPath("alice"), body, "Authorization", "Bearer "+svc, "Content-Type", "application/json")
	}
	if res := put(`{"locked_plan":"pro","tos_accepted":"v3-accepted"}`); res.status != 204 {
		t.Fatalf("admin PUT of a read-only attribute: %d %s", res.status, res.body)
	}
	put(`{"internal_score":"1"}`).errors(t, 403, "attribute-read-only")
	if got := f.attributes(alice); got["locked_plan"] != "pro" || got["tos_accepted"] != "v3-accepted" || len(got) != 2 {
		t.Fatalf("alice reads %v", got)
	}
	res := f.do("GET", adminPath("bob"), "", "Authorization", "Bearer "+svc)
	if res.status != 200 || string(res.body) != `{"bob":"private"}` || res.header.Get("ETag") == "" {
		t.Fatalf("admin GET: %d %s", res.status, res.body)
	}
	// If-Match works as on the self-service route.
	if res := f.do("PUT", adminPath("bob"), `{"x":"1"}`, "Authorization", "Bearer "+svc, "If-Match", `"stale"`); res.status != 412 {
		t.Fatalf("stale If-Match: %d", res.status)
	}
	if res := f.do("PUT", adminPath("bob"), `{"x":"1"}`, "Authorization", "Bearer "+svc, "If-Match", res.header.Get("ETag")); res.status != 204 {
		t.Fatalf("current If-Match: %d", res.status)
	}
	// An id no token could carry names no user.
	f.do("GET", "/admin/users/a%07b/attributes", "", "Authorization", "Bearer "+svc).errors(t, 404, "user-not-found")
	f.do("GET", "/admin/users/"+strings.Repeat("x", 256)+"/attributes", "", "Authorization", "Bearer "+svc).errors(t, 404, "user-not-found")
	res = f.do("PATCH", adminPath("bob"), `{}`, "Authorization", "Bearer "+svc)
	if res.errors(t, 405, "method-not-allowed"); res.header.Get("Allow") != "GET, HEAD, PUT, DELETE" {
		t.Fatalf("Allow: %q", res.header.Get("Allow"))
	}
	// A user's token cannot erase, not even its own user.
	f.do("DELETE", adminPath("alice"), "", "Authorization", "Bearer "+f.token("alice", "user:attributes:write")).errors(t, 403, "service-account-required")
	// The export shows every attribute, hidden ones marked; the erasure
	// leaves none, and the export then shows its record.
	st.Update(context.Background(), "bob", func(a userattrs.Attributes) (userattrs.Attributes, error) {
		next := a.Clone()
		next["internal_secret"] = []string{"s"}
		return next, nil
	})
	var x struct {
		Data struct {
			Type, ID   string
			Attributes userattrs.Export
		}
	}
	res = f.do("GET", "/admin/users/bob/export", "", "Authorization", "Bearer "+svc)
	if err := json.Unmarshal(res.body, &x); err != nil || res.status != 200 || x.Data.Type != "user-exports" || x.Data.ID != "bob" ||
		!x.Data.Attributes.Attributes["internal_secret"].Hidden || x.Data.Attributes.Attributes["bob"].Hidden || len(x.Data.Attributes.History) != 3 {
		t.Fatalf("export: %d %s", res.status, res.body)
	}
	erased := f.do("DELETE", adminPath("bob"), "", "Authorization", "Bearer "+svc)
	if erased.status != 204 {
		t.Fatalf("erase: %d %s", erased.status, erased.body)
	}
	if res := f.do("GET", adminPath("bob"), "", "Authorization", "Bearer "+svc); string(res.body) != `{}` {
		t.Fatalf("after the erasure: %s", res.body)
	}
	res = f.do("GET", "/admin/users/bob/export", "", "Authorization", "Bearer "+svc)
	x.Data.Attributes = userattrs.Export{}
	if err := json.Unmarshal(res.body, &x); err != nil || len(x.Data.Attributes.Attributes) != 0 || len(x.Data.Attributes.History) != 0 ||
		len(x.Data.Attributes.Erasures) != 1 || x.Data.Attributes.Erasures[0].RequestID != erased.header.Get("Request-Id") {
		t.Fatalf("export after the erasure: %d %s", res.status, res.body)
	}
}

type historyDoc struct {
	Data []struct {
		Type       string           `json:"type"`
		ID         string           `json:"id"`
		Attributes userattrs.Record `json:"attributes"`
	} `json:"data"`
	Links map[string]string `json:"links"`
}

func (f *fixture) history(t *testing.T, tok, pathAndQuery string) historyDoc {
	t.Helper()
	res := f.do("GET", pathAndQuery, "", "Authorization", "Bearer "+tok)
	if res.status != 200 || res.header.Get("Content-Type") != "application/vnd.api+json" {
		t.Fatalf("history %s: %d %s", pathAndQuery, res.status, res.body)
	}
	var doc historyDoc
	if err := json.Unmarshal(res.body, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// The history lists every change, self-service and admin, newest first,
// with who made it, through which client and request; pages follow links.
func TestHistoryRoute(t *testing.T) {
	policy, err := userattrs.NewPolicy(userattrs.PolicyConfig{Hidden: []string{"internal_*"}, Reserved: userattrs.DefaultReserved})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *options) { o.policy = policy })
	alice, svc := f.token("alice", read, write), f.adminToken()
	first := f.put(alice, `{"tos_accepted":"yes","referred":"no"}`)
	f.put(alice, `{"tos_accepted":"yes"}`) // changes nothing: no record
	second := f.do("PUT", adminPath("alice"), `{"referred":null,"plan":["a","b"]}`, "Authorization", "Bearer "+svc,
		"Content-Type", "application/json")
	doc := f.history(t, svc, adminPath("alice")+"/history")
	if len(doc.Data) != 2 || doc.Links["next"] != "" {
		t.Fatalf("history: %+v", doc)
	}
	newest, oldest := doc.Data[0].Attributes, doc.Data[1].Attributes
	if doc.Data[0].Type != "attribute-changes" || doc.Data[0].ID != newest.ID ||
		newest.Actor != (userattrs.Actor{Type: "service-account", ID: "backend"}) || newest.ClientID != "backend" ||
		newest.RequestID != second.header.Get("Request-Id") || strings.Join(newest.Removed, ",") != "referred" ||
		strings.Join(newest.Set["plan"], ",") != "a,b" || len(newest.Set) != 1 {
		t.Errorf("admin change: %+v", newest)
	}
	if oldest.Actor != (userattrs.Actor{Type: "user", ID: "alice"}) || oldest.ClientID != "test-app" ||
		oldest.RequestID != first.header.Get("Request-Id") || len(oldest.Set) != 2 || len(oldest.Removed) != 0 || oldest.User != "alice" {
		t.Errorf("user change: %+v", oldest)
	}

	for i := range 5 {
		f.put(alice, `{"n":"`+string(rune('0'+i))+`"}`)
	}
	page := f.history(t, svc, adminPath("alice")+"/history?page[size]=3&filter[key]=n")
	if len(page.Data) != 3 || page.Links["next"] == "" || page.Data[0].Attributes.Set["n"][0] != "4" {
		t.Fatalf("first page: %+v", page)
	}
	rest := f.history(t, svc, page.Links["next"])
	if len(rest.Data) != 2 || rest.Data[1].Attributes.Set["n"][0] != "0" {
		t.Fatalf("second page: %+v", rest)
	}
	// The cursor is opaque: no count of the service's changes in it, and
	// one changed, or taken to another user's history, does not open.
	next, _ := url.Parse(page.Links["next"])
	cursor := next.Query().Get("page[cursor]")
	if _, err := strconv.ParseInt(cursor, 10, 64); err == nil || len(cursor) != 22 {
		t.Fatalf("cursor %q", cursor)
	}
	tampered := "A" + cursor[1:]
	if cursor[0] == 'A' {
		tampered = "B" + cursor[1:]
	}
	for _, path := range []string{adminPath("bob") + "/history?page[cursor]=" + cursor, adminPath("alice") + "/history?page[cursor]=" + tampered} {
		doc := f.do("GET", path, "", "Authorization", "Bearer "+svc).errors(t, 400, "invalid-parameter")
		if len(doc.Errors) != 1 || !strings.Contains(doc.Errors[0].Detail, "cursor") {
			t.Errorf("%s: %+v", path, doc)
		}
	}
	if later := f.history(t, svc, adminPath("alice")+"/history?filter[since]=2999-01-01T00:00:00Z"); len(later.Data) != 0 {
		t.Errorf("changes after 2999: %d", len(later.Data))
	}
	if none := f.history(t, svc, adminPath("nobody")+"/history"); len(none.Data) != 0 {
		t.Errorf("a user never written has %d changes", len(none.Data))
	}
	for _, q := range []string{"page[size]=0", "page[size]=201", "page[cursor]=x", "filter[since]=yesterday", "sort=time", "page[size]=1&page[size]=2", "page[cursor]=9581814206816594502", "page[cursor]=0123", "page[cursor]=+5", "filter[key]=" + strings.Repeat("k", 256), "filter[since]="} {
		f.do("GET", adminPath("alice")+"/history?"+q, "", "Authorization", "Bearer "+svc).errors(t, 400, "invalid-parameter")
	}
	f.do("GET", adminPath("alice")+"/history", "", "Authorization", "Bearer "+alice).errors(t, 403, "service-account-required")
}

// A store that keeps no history says so: never an empty list that reads
// as a user who changed nothing.
func TestNoHistory(t *testing.T) {
	// The bare Store interface hides the memory store's history.
	f := newFixture(t, func(o *options) { o.store = struct{ userattrs.Store }{memory.New()} })
	f.put(f.token("alice", write), `{"a":"1"}`)
	f.do("GET", adminPath("alice")+"/history", "", "Authorization", "Bearer "+f.adminToken()).errors(t, http.StatusNotImplemented, "history-not-kept")
}

// Hidden attributes stay out of the history too: a change written behind
// the policy's back shows only what clients may see, and one of hidden
// attributes alone does not show.
func TestHistoryHidesHidden(t *testing.T) {
	store, err := sqlite.Open(context.Background(), sqlite.Config{Path: filepath.Join(t.TempDir(), "u.db")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	for _, attrs := range []userattrs.Attributes{{"internal_score": {"9"}, "a": {"1"}}, {"internal_score": {"10"}, "a": {"1"}}} {
		if err := store.Update(context.Background(), "alice", func(userattrs.Attributes) (userattrs.Attributes, error) { return attrs, nil }); err != nil {
			t.Fatal(err)
		}
	}
	policy, err := userattrs.NewPolicy(userattrs.PolicyConfig{Hidden: []string{"internal_*"}, Reserved: userattrs.DefaultReserved})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *options) { o.store, o.policy = store, policy })
	svc := f.adminToken()
	doc := f.history(t, svc, adminPath("alice")+"/history")
	if len(doc.Data) != 1 || len(doc.Data[0].Attributes.Set) != 1 || doc.Data[0].Attributes.Set["a"][0] != "1" {
		t.Fatalf("history: %+v", doc.Data)
	}
	// A hidden attribute matches no filter, not even the records that
	// changed it with others.
	if doc := f.history(t, svc, adminPath("alice")+"/history?filter[key]=internal_score"); len(doc.Data) != 0 || doc.Links["next"] != "" {
		t.Fatalf("filtered by a hidden key: %+v", doc)
	}
	// Pages of one record, walked to the end, show the visible changes and
	// nothing of the hidden one between them: no empty page, no link to one.
	tok := f.token("alice", read, write)
	f.put(tok, `{"b":"2"}`)
	if err := store.Update(context.Background(), "alice", func(a userattrs.Attributes) (userattrs.Attributes, error) {
		next := a.Clone()
		next["internal_score"] = []string{"11"}
		return next, nil
	}); err != nil {
		t.Fatal(err)
	}
	f.put(tok, `{"c":"3"}`)
	var walked []string
	for next := adminPath("alice") + "/history?page[size]=1"; next != ""; {
		page := f.history(t, svc, next)
		if len(page.Data) != 1 {
			t.Fatalf("page %s: %d records", next, len(page.Data))
		}
		for k := range page.Data[0].Attributes.Set {
			walked = append(walked, k)
		}
		next = page.Links["next"]
	}
	if strings.Join(walked, ",") != "c,b,a" {
		t.Fatalf("the pages show %v, want c, b, a", walked)
	}
	// A malformed escape is refused, not dropped with its filter.
	f.do("GET", adminPath("alice")+"/history?filter[key]=k%", "", "Authorization", "Bearer "+svc).errors(t, 400, "invalid-parameter")
}
