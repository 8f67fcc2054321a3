package keycloak

import (
	"errors"
	"strings"
	"testing"

	"github.com/userattrs/userattrs"
)

// The Admin-API-only mode judges as Keycloak does (DefaultAttributes in
// Keycloak's services): edit implies view, and unmanaged attributes follow
// the realm's policy, under which ADMIN_EDIT and ADMIN_VIEW show users
// nothing.
func TestProfileRules(t *testing.T) {
	both, admin := []string{"admin", "user"}, []string{"admin"}
	declared := func(name string, view, edit []string) upAttribute {
		return upAttribute{Name: name, Permissions: &permissions{View: view, Edit: edit}}
	}
	cfg := upConfig{Attributes: []upAttribute{
		declared("shared", both, both), declared("tier", both, admin), declared("fraud", admin, admin),
		declared("locked", both, nil), {Name: "unpermitted"},
	}}
	asUser, asAdmin := userattrs.CallerUser, userattrs.CallerAdmin
	for _, policy := range []string{"ENABLED", "ADMIN_EDIT", "ADMIN_VIEW", ""} {
		cfg.UnmanagedAttributePolicy = policy
		p, err := newProfile(cfg)
		if err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			want [4]bool // user view, user edit, admin view, admin edit
		}{
			{"shared", [4]bool{true, true, true, true}},
			{"tier", [4]bool{true, false, true, true}},
			{"fraud", [4]bool{false, false, true, true}},
			{"locked", [4]bool{true, false, true, false}},
			{"unpermitted", [4]bool{false, false, false, false}},
			{"unmanaged", [4]bool{policy == "ENABLED", policy == "ENABLED", policy != "", policy == "ENABLED" || policy == "ADMIN_EDIT"}},
		} {
			got := [4]bool{p.canView(tc.name, asUser), p.canEdit(tc.name, asUser), p.canView(tc.name, asAdmin), p.canEdit(tc.name, asAdmin)}
			if got != tc.want {
				t.Errorf("policy %q, %s: user view/edit, admin view/edit %v, want %v", policy, tc.name, got, tc.want)
			}
		}
	}

	cfg.UnmanagedAttributePolicy = "ENABLED"
	p, _ := newProfile(cfg)
	current := userattrs.Attributes{"tier": {"free"}, "shared": {"1"}}
	var readOnly *userattrs.ReadOnlyError
	err := p.check(current, userattrs.Attributes{"tier": {"gold"}, "shared": {"2"}, "fraud": {"1"}}, asUser)
	if !errors.As(err, &readOnly) || strings.Join(readOnly.Keys, ",") != "fraud,tier" {
		t.Fatalf("a user's change of tier and fraud: %v", err)
	}
	if err := p.check(current, userattrs.Attributes{"tier": {"gold"}, "fraud": {"1"}}, asAdmin); err != nil {
		t.Fatalf("an administrator's change: %v", err)
	}
	cfg.UnmanagedAttributePolicy = ""
	p, _ = newProfile(cfg)
	var invalid *userattrs.InvalidError
	if err := p.check(nil, userattrs.Attributes{"unmanaged": {"x"}}, asAdmin); !errors.As(err, &invalid) {
		t.Fatalf("an unmanaged value where the realm keeps none: %v", err)
	}
	if err := p.check(userattrs.Attributes{"unmanaged": {"x"}}, nil, asAdmin); err != nil {
		t.Fatalf("removing an unmanaged value where the realm keeps none: %v", err)
	}

	// A role other than user and admin grants nothing.
	p, _ = newProfile(upConfig{Attributes: []upAttribute{declared("x", []string{"manager"}, []string{"manager"})}})
	if p.canView("x", asUser) || p.canView("x", asAdmin) {
		t.Error("the role manager granted a view")
	}
	if _, err := newProfile(upConfig{UnmanagedAttributePolicy: "SOMETIMES"}); err == nil {
		t.Error("an unknown unmanaged-attribute policy was accepted")
	}
}
