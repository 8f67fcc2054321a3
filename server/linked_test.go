package server_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
	"github.com/userattrs/userattrs/server"
)

// linksOf answers from a table of users' linked providers.
type linksOf map[string][]string

func (l linksOf) LinkedProviders(_ context.Context, id auth.Identity) ([]string, error) {
	if id.Subject == "ghost" {
		return nil, userattrs.ErrUserNotFound
	}
	if id.Subject == "outage" {
		return nil, userattrs.ErrUnavailable
	}
	return l[id.Subject], nil
}

func TestLinkedIdentity(t *testing.T) {
	f := newFixture(t, func(o *options) {
		o.rules = server.LinkedIdentityRules{"partner-app": "partner-idp"}
		o.links = linksOf{"linked": {"other-idp", "partner-idp"}, "unlinked": {"other-idp"}}
	})
	for _, path := range []string{"/user/2024-3/attributes", "/user/2025-1/attributes"} {
		res := f.do("GET", path, "", "Authorization", "Bearer "+f.clientToken("partner-app", "unlinked", read))
		doc := res.errors(t, http.StatusUnauthorized, "missing-linked-identity")
		e := doc.Errors[0]
		if e.Title != "Missing linked identity for authorized access" ||
			e.Detail != "Linked identity is needed to access this resource, please check why the user does not have a linked identity" {
			t.Fatalf("title %q, detail %q", e.Title, e.Detail)
		}
		if res.header.Get("WWW-Authenticate") == "" {
			t.Fatal("401 without WWW-Authenticate")
		}
	}
	f.do("PUT", "/user/2024-3/attributes", `{"a":"1"}`, "Authorization", "Bearer "+f.clientToken("partner-app", "unlinked", write)).
		errors(t, http.StatusUnauthorized, "missing-linked-identity")
	if res := f.do("GET", "/user/2025-1/attributes", "", "Authorization", "Bearer "+f.clientToken("partner-app", "linked", read)); res.status != 200 {
		t.Fatalf("linked user: %d %s", res.status, res.body)
	}
	if res := f.do("GET", "/user/2025-1/attributes", "", "Authorization", "Bearer "+f.clientToken("other-app", "unlinked", read)); res.status != 200 {
		t.Fatalf("a client without the rule: %d %s", res.status, res.body)
	}
	f.do("GET", "/user/2025-1/attributes", "", "Authorization", "Bearer "+f.clientToken("partner-app", "ghost", read)).
		errors(t, http.StatusNotFound, "not-found")
	f.do("GET", "/user/2025-1/attributes", "", "Authorization", "Bearer "+f.clientToken("partner-app", "outage", read)).
		errors(t, http.StatusServiceUnavailable, "store-unavailable")
}
