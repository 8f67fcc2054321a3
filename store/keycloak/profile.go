package keycloak

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/userattrs/userattrs"
)

// profile is what a realm's user profile says of who may view and edit
// each attribute: the part of it the Admin-API-only mode applies in Go, as
// Keycloak applies it to its own Account API (users) and Admin API
// (administrators). Through the extension, Keycloak applies it itself.
type profile struct {
	managed map[string]permissions
	// unmanaged is the unmanaged-attribute policy: ENABLED, ADMIN_EDIT,
	// ADMIN_VIEW, or "" when the realm keeps no unmanaged attributes.
	unmanaged string
}

// permissions are the roles ("user", "admin") that may view and edit a
// managed attribute.
type permissions struct {
	View []string `json:"view"`
	Edit []string `json:"edit"`
}

// upConfig is the realm's user-profile configuration as the Admin API
// answers GET /users/profile, with the fields this store reads.
type upConfig struct {
	Attributes               []upAttribute `json:"attributes"`
	UnmanagedAttributePolicy string        `json:"unmanagedAttributePolicy"`
}

// upAttribute is one managed attribute of the configuration. Its selector
// (client scopes) is not read: Keycloak applies it only in login flows,
// never to the Account API or the Admin API.
type upAttribute struct {
	Name        string       `json:"name"`
	Permissions *permissions `json:"permissions"`
}

// newProfile reads cfg as Keycloak does (DeclarativeUserProfileProvider):
// an attribute without permissions is for nobody, whoever may edit may
// view, and a role other than user and admin grants nothing. Only an
// unmanaged-attribute policy this store does not know is an error.
func newProfile(cfg upConfig) (*profile, error) {
	p := &profile{managed: map[string]permissions{}, unmanaged: cfg.UnmanagedAttributePolicy}
	switch p.unmanaged {
	case "", "ENABLED", "ADMIN_EDIT", "ADMIN_VIEW":
	default:
		return nil, fmt.Errorf("an unmanaged-attribute policy %q that this service does not know", p.unmanaged)
	}
	for _, a := range cfg.Attributes {
		var perms permissions
		if a.Permissions != nil {
			perms = *a.Permissions
		}
		p.managed[a.Name] = perms
	}
	return p, nil
}

// The roles of the user profile's permissions.
const (
	roleUser  = "user"
	roleAdmin = "admin"
)

func role(c userattrs.Caller) string {
	if c == userattrs.CallerAdmin {
		return roleAdmin
	}
	return roleUser
}

// canEdit reports whether the caller may change the attribute name.
func (p *profile) canEdit(name string, c userattrs.Caller) bool {
	if perms, ok := p.managed[name]; ok {
		return slices.Contains(perms.Edit, role(c))
	}
	return p.unmanaged == "ENABLED" || p.unmanaged == "ADMIN_EDIT" && c == userattrs.CallerAdmin
}

// canView reports whether the caller may see the attribute name: whoever
// may edit it may see it.
func (p *profile) canView(name string, c userattrs.Caller) bool {
	if perms, ok := p.managed[name]; ok {
		return p.canEdit(name, c) || slices.Contains(perms.View, role(c))
	}
	return p.canEdit(name, c) || p.unmanaged == "ADMIN_VIEW" && c == userattrs.CallerAdmin
}

// keepsUnmanaged reports whether the realm keeps unmanaged attributes at
// all: where it keeps none, Keycloak drops their values without a word.
func (p *profile) keepsUnmanaged() bool { return p.unmanaged != "" }

// visible returns the attributes the caller may see.
func (p *profile) visible(attrs userattrs.Attributes, c userattrs.Caller) userattrs.Attributes {
	v := make(userattrs.Attributes, len(attrs))
	for k, vs := range attrs {
		if p.canView(k, c) {
			v[k] = vs
		}
	}
	return v
}

// check refuses a change from current to next that the caller may not
// make: names it may not edit are a *ReadOnlyError, values of unmanaged
// attributes that the realm would drop an *InvalidError.
func (p *profile) check(current, next userattrs.Attributes, c userattrs.Caller) error {
	var readOnly []string
	var violations []userattrs.Violation
	for _, k := range changedKeys(current, next) {
		_, managed := p.managed[k]
		_, set := next[k]
		switch {
		case !managed && !p.keepsUnmanaged():
			if set {
				violations = append(violations, userattrs.Violation{Key: k, Index: -1,
					Detail: "Keycloak's user profile refuses this value (the realm's user profile does not keep unmanaged attributes); nothing was changed"})
			}
		case !p.canEdit(k, c):
			readOnly = append(readOnly, k)
		}
	}
	if readOnly != nil {
		return &userattrs.ReadOnlyError{Keys: readOnly}
	}
	if violations != nil {
		return &userattrs.InvalidError{Violations: violations}
	}
	return nil
}

// changedKeys returns, sorted, the names whose values differ between a
// and b.
func changedKeys(a, b userattrs.Attributes) []string {
	var keys []string
	for k, v := range b {
		if !slices.Equal(a[k], v) {
			keys = append(keys, k)
		}
	}
	for k := range a {
		if _, ok := b[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// profileCache keeps the realm's user profile for a while: a change an
// operator makes in Keycloak applies within ttl.
type profileCache struct {
	ttl     time.Duration
	mu      sync.Mutex
	p       *profile
	fetched time.Time
}

// profile returns the realm's user profile, read again once ttl has
// passed. One this store cannot read is an error of every call until the
// operator changes it.
func (s *Store) profile(ctx context.Context) (*profile, error) {
	c := &s.profiles
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.p != nil && time.Since(c.fetched) < c.ttl {
		return c.p, nil
	}
	var cfg upConfig
	if err := s.getJSON(ctx, s.admin, "/users/profile", &cfg); err != nil {
		return nil, err
	}
	p, err := newProfile(cfg)
	if err != nil {
		return nil, fmt.Errorf("keycloak: the realm's user profile has %w: install the userattrs extension, which lets Keycloak apply it", err)
	}
	c.p, c.fetched = p, time.Now()
	return p, nil
}
