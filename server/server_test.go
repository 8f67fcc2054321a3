package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/rs/xid"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/internal/sdkdecode"
	"github.com/userattrs/userattrs/store/memory"
)

var versions = []string{"2024-2", "2024-3", "2025-1"}

// Merges through HTTP, on both versions, as clients see them.
func TestMerge(t *testing.T) {
	cases := []struct {
		name   string
		before string
		body   string
		want   map[string]any
	}{
		{"published example", "", `{"referred":"false","tos_accepted":"true"}`,
			map[string]any{"referred": "false", "tos_accepted": "true"}},
		{"untouched keys stay", `{"a":"1","b":"2"}`, `{"b":"3"}`, map[string]any{"a": "1", "b": "3"}},
		{"null removes", `{"a":"1","b":"2"}`, `{"a":null}`, map[string]any{"b": "2"}},
		{"empty array removes", `{"a":"1","b":"2"}`, `{"a":[]}`, map[string]any{"b": "2"}},
		{"empty object is a no-op", `{"a":"1"}`, `{}`, map[string]any{"a": "1"}},
		{"array keeps order", "", `{"l":["z","a","z"]}`, map[string]any{"l": []any{"z", "a", "z"}}},
		{"one-element array reads as a string", "", `{"l":["only"]}`, map[string]any{"l": "only"}},
		{"strings are never coerced", "", `{"n":"1","b":"true","x":"null"}`, map[string]any{"n": "1", "b": "true", "x": "null"}},
		{"escapes and unicode", "", `{"k\u00e9y":"v\n\"\u263a\"","a/b~c":"","pair":"\ud83d\ude00","not an escape":"\\ud800"}`,
			map[string]any{"kéy": "v\n\"☺\"", "a/b~c": "", "pair": "😀", "not an escape": `\ud800`}},
	}
	// The admin route merges alike, for the user in its path.
	for _, version := range append(slices.Clone(versions), "admin") {
		for _, tc := range cases {
			t.Run(version+"/"+tc.name, func(t *testing.T) {
				f := newFixture(t)
				tok := f.token("alice", read, write)
				path := "/user/" + version + "/attributes"
				if version == "admin" {
					tok, path = f.adminToken(), "/admin/users/alice/attributes"
				}
				if tc.before != "" {
					if res := f.do("PUT", path, tc.before, "Authorization", "Bearer "+tok); res.status != 204 {
						t.Fatalf("setup PUT: %d %s", res.status, res.body)
					}
				}
				res := f.do("PUT", path, tc.body, "Authorization", "Bearer "+tok, "Content-Type", "application/json")
				if res.status != http.StatusNoContent || len(res.body) != 0 {
					t.Fatalf("PUT: %d %q, want 204 and no body", res.status, res.body)
				}
				got := f.do("GET", path, "", "Authorization", "Bearer "+tok)
				if got.status != 200 {
					t.Fatalf("GET: %d", got.status)
				}
				if g, w := string(got.body), mustJSON(t, tc.want); g != w {
					t.Fatalf("GET body %s, want %s", g, w)
				}
			})
		}
	}
	t.Run("users do not see each other", func(t *testing.T) {
		f := newFixture(t)
		f.put(f.token("alice", write), `{"secret":"alice's"}`)
		if got := f.attributes(f.token("bob", read)); len(got) != 0 {
			t.Fatalf("bob sees %v", got)
		}
	})
}

func TestGetResponse(t *testing.T) {
	f := newFixture(t)
	tok := f.token("alice", read, write)
	if got := f.attributes(tok); len(got) != 0 {
		t.Fatalf("new user: %v, want {}", got)
	}
	if res := f.get(tok); string(res.body) != "{}" {
		t.Fatalf("new user body %q, want {}", res.body)
	}
	f.put(tok, `{"tos_accepted":"true"}`)

	// The Android client sends JSON:API headers on GET and expects the
	// plain object back, never 406.
	res := f.do("GET", "/user/2025-1/attributes", "", "Authorization", "Bearer "+tok,
		"Accept", "application/vnd.api+json", "Content-Type", "application/vnd.api+json")
	if res.status != 200 || res.header.Get("Content-Type") != "application/json" || string(res.body) != `{"tos_accepted":"true"}` {
		t.Fatalf("GET with JSON:API headers: %d %s %s", res.status, res.header.Get("Content-Type"), res.body)
	}
	if cc := res.header.Get("Cache-Control"); cc != "no-store" {
		t.Fatalf("Cache-Control %q", cc)
	}
	etag := res.header.Get("ETag")
	if !strings.HasPrefix(etag, `"`) || !strings.HasSuffix(etag, `"`) || len(etag) < 10 {
		t.Fatalf("ETag %q is not a strong entity tag", etag)
	}
	if nm := f.do("GET", "/user/2025-1/attributes", "", "Authorization", "Bearer "+tok, "If-None-Match", etag); nm.status != http.StatusNotModified || nm.header.Get("ETag") != etag {
		t.Fatalf("If-None-Match current: %d", nm.status)
	}
	if head := f.do("HEAD", "/user/2025-1/attributes", "", "Authorization", "Bearer "+tok); head.status != 200 || len(head.body) != 0 || head.header.Get("ETag") != etag {
		t.Fatalf("HEAD: %d %q", head.status, head.body)
	}
}

// The header is written "ETag", as RFC 9110 spells it: clients that look
// headers up case-sensitively find it.
func TestETagSpelling(t *testing.T) {
	f := newFixture(t)
	tok := f.token("alice", read, write)
	f.put(tok, `{"a":"1"}`)
	for _, method := range []string{"GET", "HEAD"} {
		req := httptest.NewRequest(method, "/user/2024-2/attributes", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		f.handler.ServeHTTP(rec, req)
		if v := rec.Header()["ETag"]; rec.Code != 200 || len(v) != 1 || len(rec.Header()["Etag"]) != 0 {
			t.Errorf("%s: %d, headers %v", method, rec.Code, rec.Header())
		}
	}
}

// Values the SDKs' map types let apps send are refused, never coerced, with
// a detail that says what to send instead.
func TestTypeHints(t *testing.T) {
	f := newFixture(t)
	tok := f.token("alice", read, write)
	doc := f.put(tok, `{"b":true,"n":1,"l":["x",2],"o":{}}`).errors(t, 422, "invalid-attribute")
	want := []struct{ pointer, hint string }{
		{"/b", `send the value as a string, e.g. "true"`},
		{"/n", `send the value as a string, e.g. "1"`},
		{"/l/1", `send the value as a string, e.g. "1"`},
		{"/o", "not an object"},
	}
	if len(doc.Errors) != len(want) {
		t.Fatalf("%d errors, want %d", len(doc.Errors), len(want))
	}
	for i, w := range want {
		e := doc.Errors[i]
		if e.Source == nil || *e.Source.Pointer != w.pointer || !strings.Contains(e.Detail, w.hint) {
			t.Errorf("error %d: %+v, want pointer %s and %q", i, e, w.pointer, w.hint)
		}
	}
}

func TestIfMatch(t *testing.T) {
	f := newFixture(t)
	tok := f.token("alice", read, write)
	f.put(tok, `{"a":"1"}`)
	etag := f.get(tok).header.Get("ETag")

	if res := f.put(tok, `{"b":"2"}`, "If-Match", etag); res.status != 204 {
		t.Fatalf("current If-Match: %d %s", res.status, res.body)
	}
	current := f.get(tok).header.Get("ETag")
	for _, stale := range []string{etag, `"nope"`, "W/" + current, `garbage`, ``, `*, ` + current, current + ` "x"`} {
		res := f.put(tok, `{"c":"3"}`, "If-Match", stale)
		res.errors(t, http.StatusPreconditionFailed, "precondition-failed")
	}
	if got := f.attributes(tok); got["c"] != nil {
		t.Fatalf("a failed conditional PUT changed the attributes: %v", got)
	}
	if res := f.put(tok, `{"c":"3"}`, "If-Match", `"other", `+f.get(tok).header.Get("ETag")); res.status != 204 {
		t.Fatalf("If-Match list naming the current tag: %d", res.status)
	}
	if res := f.put(tok, `{"d":"4"}`, "If-Match", "*"); res.status != 204 {
		t.Fatalf("If-Match *: %d", res.status)
	}
}

func TestContentTypes(t *testing.T) {
	for _, ct := range []string{"", "application/json", "application/json; charset=utf-8", "application/vnd.api+json", "Application/JSON"} {
		t.Run("accepts "+ct, func(t *testing.T) {
			f := newFixture(t)
			tok := f.token("alice", read, write)
			headers := []string{"Authorization", "Bearer " + tok}
			if ct != "" {
				headers = append(headers, "Content-Type", ct)
			}
			if res := f.do("PUT", "/user/2024-3/attributes", `{"a":"1"}`, headers...); res.status != 204 {
				t.Fatalf("%d %s", res.status, res.body)
			}
		})
	}
}

// Every row of the contract's error table, each from a request that would
// otherwise succeed, and each leaving the attributes as they were.
func TestErrors(t *testing.T) {
	type check = errorCheck // pointers, when not nil, are the errors' in order
	big := `{"a":"` + strings.Repeat("x", 64<<10) + `"}`
	long := strings.Repeat("k", 256)
	cases := []errorCase{
		{"not JSON", "PUT", "", `{"a":`, nil, false, check{400, "invalid-json", nil, [2]string{}}},
		{"a body labelled gzip", "PUT", "", `{"a":"1"}`, []string{"Content-Encoding", "gzip"}, false,
			check{415, "unsupported-media-type", nil, [2]string{"Accept-Encoding", "identity"}}},
		{"a body labelled br, identity", "PUT", "", `{"a":"1"}`, []string{"Content-Encoding", "identity, br"}, false,
			check{415, "unsupported-media-type", nil, [2]string{}}},
		{"empty body", "PUT", "", ``, nil, false, check{400, "invalid-json", nil, [2]string{}}},
		{"invalid UTF-8", "PUT", "", "{\"a\":\"\xff\"}", nil, false, check{400, "invalid-json", nil, [2]string{}}},
		{"trailing data", "PUT", "", `{"a":"1"} x`, nil, false, check{400, "invalid-json", nil, [2]string{}}},
		{"lone high surrogate", "PUT", "", `{"a":"x\ud800y"}`, nil, false, check{400, "invalid-json", nil, [2]string{}}},
		{"lone low surrogate", "PUT", "", `{"\udc00":"x"}`, nil, false, check{400, "invalid-json", nil, [2]string{}}},
		{"reversed surrogate pair", "PUT", "", `{"a":"\ude00\ud83d"}`, nil, false, check{400, "invalid-json", nil, [2]string{}}},
		{"two objects", "PUT", "", `{"a":"1"}{"b":"2"}`, nil, false, check{400, "invalid-json", nil, [2]string{}}},
		{"not an object: array", "PUT", "", `["a"]`, nil, false, check{400, "invalid-body", nil, [2]string{}}},
		{"not an object: string", "PUT", "", `"a"`, nil, false, check{400, "invalid-body", nil, [2]string{}}},
		{"not an object: null", "PUT", "", `null`, nil, false, check{400, "invalid-body", nil, [2]string{}}},
		{"duplicate member", "PUT", "", `{"a":"1","a":"2"}`, nil, false, check{400, "invalid-body", nil, [2]string{}}},
		{"duplicate member by escape", "PUT", "", `{"a":"1","\u0061":"2"}`, nil, false, check{400, "invalid-body", nil, [2]string{}}},

		{"no token", "GET", "", "", nil, true, check{401, "missing-token", nil, [2]string{"WWW-Authenticate", `Bearer realm="userattrs"`}}},
		{"basic auth", "GET", "", "", []string{"Authorization", "Basic YTpi"}, true, check{401, "missing-token", nil, [2]string{"WWW-Authenticate", `Bearer realm="userattrs"`}}},
		{"garbage token", "GET", "", "", []string{"Authorization", "Bearer abc.def.ghi"}, true,
			check{401, "invalid-token", nil, [2]string{"WWW-Authenticate", `Bearer realm="userattrs", error="invalid_token"`}}},
		{"empty bearer", "PUT", "", `{}`, []string{"Authorization", "Bearer "}, true,
			check{401, "invalid-token", nil, [2]string{"WWW-Authenticate", `Bearer realm="userattrs", error="invalid_token"`}}},

		{"read scope cannot PUT", "PUT", "", `{"a":"1"}`, []string{"scope", read}, false,
			check{403, "insufficient-scope", nil, [2]string{"WWW-Authenticate", `Bearer realm="userattrs", error="insufficient_scope", scope="user:attributes:write"`}}},
		{"write scope cannot GET", "GET", "", "", []string{"scope", write}, false,
			check{403, "insufficient-scope", nil, [2]string{"WWW-Authenticate", `Bearer realm="userattrs", error="insufficient_scope", scope="user:attributes:read"`}}},
		{"read-only attribute", "PUT", "", `{"ok":"1","locked_at":"x","system.flag":null}`, nil, false,
			check{403, "attribute-read-only", []string{"/locked_at", "/system.flag"}, [2]string{}}},
		{"hidden attribute", "PUT", "", `{"internal_score":"9"}`, nil, false,
			check{403, "attribute-read-only", []string{"/internal_score"}, [2]string{}}},

		{"unknown version", "GET", "/user/2023-1/attributes", "", nil, false, check{404, "not-found", nil, [2]string{}}},
		{"unknown version, other method", "POST", "/user/2023-1/attributes", "", nil, false, check{404, "not-found", nil, [2]string{}}},
		{"unknown path", "GET", "/user/2024-3/other", "", nil, false, check{404, "not-found", nil, [2]string{}}},
		{"trailing slash", "GET", "/user/2024-3/attributes/", "", nil, false, check{404, "not-found", nil, [2]string{}}},
		{"double slash", "GET", "//user/2024-3/attributes", "", nil, false, check{404, "not-found", nil, [2]string{}}},
		{"dot segment", "GET", "/user/x/../2024-3/attributes", "", nil, false, check{404, "not-found", nil, [2]string{}}},
		{"root", "GET", "/", "", nil, false, check{404, "not-found", nil, [2]string{}}},

		{"POST", "POST", "", `{}`, nil, false, check{405, "method-not-allowed", nil, [2]string{"Allow", "GET, HEAD, PUT"}}},
		{"DELETE", "DELETE", "", "", nil, false, check{405, "method-not-allowed", nil, [2]string{"Allow", "GET, HEAD, PUT"}}},
		{"PATCH", "PATCH", "", `{}`, nil, false, check{405, "method-not-allowed", nil, [2]string{"Allow", "GET, HEAD, PUT"}}},
		{"POST liveness", "POST", "/health/liveness", "", nil, false, check{405, "method-not-allowed", nil, [2]string{"Allow", "GET, HEAD"}}},

		{"stale If-Match", "PUT", "", `{"a":"1"}`, []string{"If-Match", `"stale"`}, false, check{412, "precondition-failed", nil, [2]string{}}},

		{"body over the limit", "PUT", "", big, nil, false, check{413, "body-too-large", nil, [2]string{}}},

		{"text/plain", "PUT", "", `{"a":"1"}`, []string{"Content-Type", "text/plain"}, false, check{415, "unsupported-media-type", nil, [2]string{}}},
		{"form", "PUT", "", `a=1`, []string{"Content-Type", "application/x-www-form-urlencoded"}, false, check{415, "unsupported-media-type", nil, [2]string{}}},
		{"malformed content type", "PUT", "", `{}`, []string{"Content-Type", "application/json; ="}, false, check{415, "unsupported-media-type", nil, [2]string{}}},

		{"number", "PUT", "", `{"ok":"1","n":1}`, nil, false, check{422, "invalid-attribute", []string{"/n"}, [2]string{}}},
		{"every wrong type", "PUT", "", `{"b":true,"o":{"x":"y"},"a":["x",2,{}],"f":1.5e3,"s":"fine"}`, nil, false,
			check{422, "invalid-attribute", []string{"/b", "/o", "/a/1", "/f"}, [2]string{}}},
		{"nested arrays", "PUT", "", `{"a":[["x"]]}`, nil, false, check{422, "invalid-attribute", []string{"/a/0"}, [2]string{}}},
		{"empty key", "PUT", "", `{"":"x"}`, nil, false, check{422, "invalid-attribute", []string{"/"}, [2]string{}}},
		{"key too long", "PUT", "", `{"` + long + `":"x"}`, nil, false, check{422, "invalid-attribute", []string{"/" + long}, [2]string{}}},
		{"control character in key", "PUT", "", `{"a\u0007b":"x","c\nd":"y"}`, nil, false, check{422, "invalid-attribute", []string{"/a\u0007b", "/c\nd"}, [2]string{}}},
		{"value too long", "PUT", "", `{"v":"` + strings.Repeat("x", 2049) + `"}`, nil, false, check{422, "invalid-attribute", []string{"/v"}, [2]string{}}},
		{"element too long", "PUT", "", `{"v":["a","` + strings.Repeat("x", 2049) + `"]}`, nil, false, check{422, "invalid-attribute", []string{"/v"}, [2]string{}}},
		{"too many values", "PUT", "", `{"v":[` + strings.TrimSuffix(strings.Repeat(`"x",`, 65), ",") + `]}`, nil, false, check{422, "invalid-attribute", []string{"/v"}, [2]string{}}},
		{"pointer escapes", "PUT", "", `{"a/b~c":1}`, nil, false, check{422, "invalid-attribute", []string{"/a~1b~0c"}, [2]string{}}},

		{"reserved name data", "PUT", "", `{"ok":"1","data":"x"}`, nil, false, check{422, "attribute-reserved", []string{"/data"}, [2]string{}}},
		{"reserved names as arrays", "PUT", "", `{"included":["a"],"data":["b","c"]}`, nil, false,
			check{422, "attribute-reserved", []string{"/included", "/data"}, [2]string{}}},
	}
	// The cases of the attributes route run against the admin route too,
	// but those of a user token's scopes and the read-only attributes,
	// which the admin API may write (TestAdminAccess).
	for _, route := range []string{"self", "admin"} {
		for _, tc := range cases {
			// The admin route allows DELETE too (TestAdminAccess).
			if route == "admin" && (tc.path != "" || slices.Contains(tc.headers, "scope") || tc.want.code == "attribute-read-only" && tc.name != "hidden attribute" ||
				tc.want.code == "method-not-allowed") {
				continue
			}
			t.Run(route+"/"+tc.name, func(t *testing.T) {
				runErrorCase(t, route, tc)
			})
		}
	}
}

type errorCheck = struct {
	status   int
	code     string
	pointers []string
	header   [2]string
}

// errorCase is a request that changes nothing, and what it gets.
type errorCase struct {
	name    string
	method  string
	path    string
	body    string
	headers []string // besides a token with both scopes, unless noAuth
	noAuth  bool
	want    errorCheck
}

func runErrorCase(t *testing.T, route string, tc errorCase) {
	policy, err := userattrs.NewPolicy(userattrs.PolicyConfig{Hidden: []string{"internal_*"}, ReadOnly: []string{"locked_*", "system.*"}, Reserved: userattrs.DefaultReserved})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *options) { o.policy = policy })
	full := f.token("alice", read, write)
	f.put(full, `{"keep":"me"}`)
	before := f.get(full).body

	tok := full
	if route == "admin" {
		tok = f.adminToken()
	}
	var headers []string
	for i := 0; i < len(tc.headers); i += 2 {
		if tc.headers[i] == "scope" {
			tok = f.token("alice", tc.headers[i+1])
			continue
		}
		headers = append(headers, tc.headers[i], tc.headers[i+1])
	}
	if !tc.noAuth {
		headers = append(headers, "Authorization", "Bearer "+tok)
	}
	if tc.method == "PUT" && !slices.Contains(headers, "Content-Type") {
		headers = append(headers, "Content-Type", "application/json")
	}
	path := tc.path
	switch {
	case path != "":
	case route == "admin":
		path = "/admin/users/alice/attributes"
	default:
		path = "/user/2024-3/attributes"
	}
	res := f.do(tc.method, path, tc.body, headers...)
	doc := res.errors(t, tc.want.status, tc.want.code)
	if tc.want.pointers != nil && !slices.Equal(doc.pointers(), tc.want.pointers) {
		t.Errorf("pointers %q, want %q", doc.pointers(), tc.want.pointers)
	}
	if h := tc.want.header; h[0] != "" && res.header.Get(h[0]) != h[1] {
		t.Errorf("%s: %q, want %q", h[0], res.header.Get(h[0]), h[1])
	}
	if after := f.get(full).body; string(after) != string(before) {
		t.Errorf("a rejected request changed the attributes: %s -> %s", before, after)
	}
}

func TestAttributeCountLimit(t *testing.T) {
	f := newFixture(t, func(o *options) { o.limits.MaxAttributes = 3 })
	tok := f.token("alice", read, write)
	if res := f.put(tok, `{"a":"1","b":"2"}`); res.status != 204 {
		t.Fatal(res.status)
	}
	doc := f.put(tok, `{"a":"x","c":"3","d":"4"}`).errors(t, 422, "invalid-attribute")
	if !slices.Equal(doc.pointers(), []string{"/c", "/d"}) {
		t.Fatalf("pointers %v, want the members that add attributes", doc.pointers())
	}
	if got := f.attributes(tok); got["a"] != "1" || len(got) != 2 {
		t.Fatalf("a rejected merge changed the attributes: %v", got)
	}
	if res := f.put(tok, `{"a":null,"c":"3","d":"4"}`); res.status != 204 {
		t.Fatalf("a merge that stays within the limit: %d %s", res.status, res.body)
	}
}

func TestHiddenAttributesAreNotReturned(t *testing.T) {
	policy, _ := userattrs.NewPolicy(userattrs.PolicyConfig{Hidden: []string{"internal_*"}, ReadOnly: []string{"locked"}, Reserved: userattrs.DefaultReserved})
	store := memory.New()
	seed := userattrs.Attributes{"internal_score": {"9"}, "locked": {"yes"}, "pref": {"dark"}}
	if err := store.Update(context.Background(), "alice", func(userattrs.Attributes) (userattrs.Attributes, error) { return seed, nil }); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *options) { o.policy = policy; o.store = store })
	tok := f.token("alice", read, write)
	if got := f.attributes(tok); len(got) != 2 || got["locked"] != "yes" || got["pref"] != "dark" {
		t.Fatalf("GET %v, want the read-only attribute but not the hidden one", got)
	}
	// A merge keeps what the client cannot see.
	f.put(tok, `{"pref":"light"}`)
	stored, _ := store.Get(context.Background(), "alice")
	if v := stored["internal_score"]; !slices.Equal(v, []string{"9"}) {
		t.Fatalf("hidden attribute after a merge: %v", v)
	}
}

// Reserved names (data and included by default) are set by no merge, on
// either route. One a store already holds (written in Keycloak's console,
// or before names were reserved) is left out of every read and its ETag,
// kept by every merge that does not name it, and removed by a null.
func TestReservedAttributes(t *testing.T) {
	store := memory.New()
	seed := userattrs.Attributes{"data": {"legacy"}, "included": {"x", "y"}, "pref": {"dark"}}
	if err := store.Update(context.Background(), "alice", func(userattrs.Attributes) (userattrs.Attributes, error) { return seed, nil }); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *options) { o.store = store })
	tok := f.token("alice", read, write)
	res := f.get(tok)
	if string(res.body) != `{"pref":"dark"}` {
		t.Fatalf("GET %s, want the reserved names left out", res.body)
	}
	admin := f.do("GET", adminPath("alice"), "", "Authorization", "Bearer "+f.adminToken())
	if string(admin.body) != `{"pref":"dark"}` || admin.header.Get("ETag") != res.header.Get("ETag") {
		t.Fatalf("admin GET %s %s, want what the user reads", admin.body, admin.header.Get("ETag"))
	}
	// The ETag is that of what the client reads: a PUT conditional on it
	// holds.
	if r := f.put(tok, `{"pref":"light"}`, "If-Match", res.header.Get("ETag")); r.status != 204 {
		t.Fatalf("PUT with the ETag of GET: %d %s", r.status, r.body)
	}
	stored, _ := store.Get(context.Background(), "alice")
	if !slices.Equal(stored["data"], []string{"legacy"}) || !slices.Equal(stored["included"], []string{"x", "y"}) {
		t.Fatalf("a merge that does not name them dropped reserved attributes: %v", stored)
	}
	// A body that sets a reserved name besides breaking a rule lists both,
	// in body order, and changes nothing.
	doc := f.put(tok, `{"data":"x","n":1,"ok":"1"}`)
	var errs errorDoc
	if err := json.Unmarshal(doc.body, &errs); err != nil || doc.status != 422 || len(errs.Errors) != 2 ||
		errs.Errors[0].Code != "attribute-reserved" || errs.Errors[1].Code != "invalid-attribute" ||
		!slices.Equal(errs.pointers(), []string{"/data", "/n"}) || !strings.Contains(errs.Errors[0].Detail, "JSON:API") {
		t.Fatalf("reserved and invalid together: %d %s", doc.status, doc.body)
	}
	// null removes a reserved name, on either route.
	if r := f.put(tok, `{"data":null}`); r.status != 204 {
		t.Fatalf("removing a reserved name: %d %s", r.status, r.body)
	}
	if r := f.do("PUT", adminPath("alice"), `{"included":null}`, "Authorization", "Bearer "+f.adminToken(),
		"Content-Type", "application/json"); r.status != 204 {
		t.Fatalf("admin removing a reserved name: %d %s", r.status, r.body)
	}
	stored, _ = store.Get(context.Background(), "alice")
	if len(stored) != 1 || !slices.Equal(stored["pref"], []string{"light"}) {
		t.Fatalf("after the removals the store holds %v", stored)
	}

	// With no names reserved (--reserved-attributes ""), every name is
	// an attribute like any other, and an iOS app can no longer read it.
	open := newFixture(t, func(o *options) { o.reserveNothing = true })
	tok = open.token("bob", read, write)
	if r := open.put(tok, `{"data":"x"}`); r.status != 204 {
		t.Fatalf("PUT of data with nothing reserved: %d %s", r.status, r.body)
	}
	if got := open.attributes(tok); got["data"] != "x" {
		t.Fatalf("GET with nothing reserved: %v", got)
	}
	if _, err := sdkdecode.DecodeIOS(open.get(tok).body); err == nil {
		t.Fatal("the iOS SDK decodes an attribute named data")
	}
}

func TestStoreFailures(t *testing.T) {
	cases := []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{"unknown user", userattrs.ErrUserNotFound, 404, "not-found"},
		{"store down", userattrs.ErrUnavailable, 503, "store-unavailable"},
		{"issuer down", auth.ErrUnavailable, 503, "store-unavailable"},
		{"unexpected", errors.New("disk on fire at /var/lib/x"), 501, "internal-error"},
		{"client went away", context.Canceled, 503, "store-unavailable"},
		{"panic", errPanic, 501, "internal-error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, func(o *options) { o.store = failingStore{memory.New(), tc.err} })
			tok := f.token("alice", read, write)
			for _, res := range []response{f.get(tok), f.put(tok, `{"a":"1"}`)} {
				doc := res.errors(t, tc.status, tc.code)
				if strings.Contains(string(res.body), "fire") || strings.Contains(string(res.body), "goroutine") {
					t.Fatalf("error leaks internals: %s", res.body)
				}
				if tc.status == 503 && res.header.Get("Retry-After") == "" {
					t.Fatalf("503 without Retry-After")
				}
				_ = doc
			}
		})
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t)
	valid := xid.New().String()
	cases := []struct {
		incoming string
		kept     bool
	}{
		{"", false}, {valid, true}, {"not-an-xid", false}, {strings.ToUpper(valid), false},
		{valid + "0", false}, {"zzzzzzzzzzzzzzzzzzzz", false},
	}
	for _, tc := range cases {
		var headers []string
		if tc.incoming != "" {
			headers = []string{"Request-Id", tc.incoming}
		}
		res := f.do("GET", "/nowhere", "", headers...)
		got := res.header.Get("Request-Id")
		if _, err := xid.FromString(got); err != nil {
			t.Errorf("incoming %q: response id %q is not an xid", tc.incoming, got)
		}
		if (got == tc.incoming) != tc.kept {
			t.Errorf("incoming %q: response id %q, kept=%v", tc.incoming, got, tc.kept)
		}
		if doc := res.errors(t, 404, "not-found"); doc.Errors[0].ID != got {
			t.Errorf("error id %q, header %q", doc.Errors[0].ID, got)
		}
	}
	if a, b := f.do("GET", "/x", "").header.Get("Request-Id"), f.do("GET", "/x", "").header.Get("Request-Id"); a == b {
		t.Errorf("two requests got the same id %s", a)
	}
}

func TestHealthAndMetrics(t *testing.T) {
	failing := false
	f := newFixture(t, func(o *options) {
		o.readiness = append(o.readiness, serverCheck("dependency", func(context.Context) error {
			if failing {
				return errors.New("down")
			}
			return nil
		}))
	})
	for _, p := range []string{"/health/liveness", "/health/readiness"} {
		if res := f.do("GET", p, ""); res.status != 200 || string(res.body) != "OK\n" {
			t.Fatalf("%s: %d %q", p, res.status, res.body)
		}
	}
	failing = true
	f.do("GET", "/health/readiness", "").errors(t, 503, "store-unavailable")
	if res := f.do("GET", "/health/liveness", ""); res.status != 200 {
		t.Fatalf("liveness follows readiness: %d", res.status)
	}

	tok := f.token("alice", read, write)
	f.put(tok, `{"a":"1"}`)
	f.get(tok)
	res := f.do("GET", "/metrics", "")
	if res.status != 200 {
		t.Fatalf("/metrics: %d", res.status)
	}
	for _, want := range []string{
		`userattrs_http_requests_total{method="PUT",route="PUT /user/{version}/attributes",status="204"} 1`,
		`userattrs_http_requests_total{method="GET",route="GET /user/{version}/attributes",status="200"} 1`,
		`userattrs_http_request_duration_seconds_bucket{method="GET",route="GET /user/{version}/attributes",le=`,
		`userattrs_store_operation_duration_seconds_count{operation="update",result="ok",store="test"} 1`,
	} {
		if !strings.Contains(string(res.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	f.do("BREW", "/x", "")
	if body := string(f.do("GET", "/metrics", "").body); strings.Contains(body, "BREW") || !strings.Contains(body, `method="other"`) {
		t.Errorf("an invented method reached the metric labels")
	}
}

// Logs carry one line per request, and never a token or a value.
func TestLogs(t *testing.T) {
	f := newFixture(t)
	tok := f.token("alice", read, write)
	f.put(tok, `{"secret_key":"s3cr3t-value"}`)
	f.put(tok, `{"bad":"`+strings.Repeat("s3cr3t-value", 200)+`"}`)
	f.get(tok)
	f.do("GET", "/user/2025-1/attributes", "", "Authorization", "Bearer "+tok+"tampered")
	logs := f.logs.String()
	for _, secret := range []string{tok, tok[len(tok)-20:], "s3cr3t-value"} {
		if strings.Contains(logs, secret) {
			t.Fatalf("logs contain a secret: %s", logs)
		}
	}
	if n := strings.Count(logs, `"msg":"request"`); n != 4 {
		t.Fatalf("%d request lines for 4 requests:\n%s", n, logs)
	}
	for _, field := range []string{`"request_id":`, `"method":"PUT"`, `"route":"PUT /user/{version}/attributes"`, `"status":204`, `"duration_ms":`, `"client_id":"test-app"`} {
		if !strings.Contains(logs, field) {
			t.Errorf("logs lack %s", field)
		}
	}
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
