package conformance

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
)

// RunPolicyTests checks that an attribute policy file's rules hold on the
// store as the service applies them: value rules on both routes, who may
// write, and each client's view and entity tag.
func RunPolicyTests(t *testing.T, newHarness func(t *testing.T) Harness) {
	h := newHarness(t)
	rules, err := userattrs.ParseAttributeRules([]byte(`
attributes:
  - match: tos_accepted
    enum: ["true", "false"]
  - match: partner_*
    read: [partner-app]
    write: [partner-app]
  - match: premium
    write: []
`), userattrs.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := userattrs.NewPolicy(userattrs.PolicyConfig{Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	svc := userattrs.NewService(h.Store, userattrs.ServiceConfig{Limits: userattrs.DefaultLimits, Policy: policy,
		ReadCache: userattrs.ReadCacheConfig{Enabled: true, TTL: time.Minute}})
	user := h.NewUser(t)
	as := func(client string) context.Context {
		return userattrs.WithOrigin(context.Background(), userattrs.Origin{Actor: user, ClientID: client})
	}
	var invalid *userattrs.InvalidError
	if err := svc.Merge(as("app"), user, patch("tos_accepted", "maybe"), userattrs.Precondition{}); !errors.As(err, &invalid) {
		t.Fatalf("a value outside the enum: %v", err)
	}
	if err := svc.AdminMerge(as("backend"), user, patch("tos_accepted", "maybe"), userattrs.Precondition{}); !errors.As(err, &invalid) {
		t.Fatalf("a value outside the enum through the admin API: %v", err)
	}
	var readOnly *userattrs.ReadOnlyError
	if err := svc.Merge(as("app"), user, patch("premium", "true"), userattrs.Precondition{}); !errors.As(err, &readOnly) {
		t.Fatalf("an app writes an entitlement: %v", err)
	}
	if err := svc.Merge(as("app"), user, patch("partner_x", "1"), userattrs.Precondition{}); !errors.As(err, &readOnly) {
		t.Fatalf("an app writes a partner's attribute: %v", err)
	}
	if err := svc.AdminMerge(as("backend"), user, patch("premium", "true", "tos_accepted", "true"), userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Merge(as("partner-app"), user, patch("partner_x", "1"), userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	app, err := svc.Get(as("app"), user)
	if err != nil {
		t.Fatal(err)
	}
	wantAttributes(t, app.Attributes(), userattrs.Attributes{"premium": {"true"}, "tos_accepted": {"true"}})
	partner, err := svc.Get(as("partner-app"), user)
	if err != nil {
		t.Fatal(err)
	}
	wantAttributes(t, partner.Attributes(), userattrs.Attributes{"premium": {"true"}, "tos_accepted": {"true"}, "partner_x": {"1"}})
	// The app's entity tag is over what it sees: the partner's write
	// leaves it current.
	etag := app.ETag()
	if err := svc.Merge(as("partner-app"), user, patch("partner_x", "2"), userattrs.Precondition{}); err != nil {
		t.Fatal(err)
	}
	if err := svc.Merge(as("app"), user, patch("referred", "yes"), userattrs.IfMatch(false, []string{etag})); err != nil {
		t.Fatalf("the app's conditional merge after the partner's write: %v", err)
	}
	if err := svc.Merge(as("app"), user, patch("referred", "no"), userattrs.IfMatch(false, []string{etag})); !errors.Is(err, userattrs.ErrPreconditionFailed) {
		t.Fatalf("the app's conditional merge with a stale tag: %v", err)
	}
}
