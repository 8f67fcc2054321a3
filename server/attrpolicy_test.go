package server_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/userattrs/userattrs"
)

// The policy of docs/attribute-policy.md's worked example: partner apps,
// a value enum, a pattern, backend-only entitlements.
const examplePolicy = `
attributes:
  - match: "tos_accepted"
    enum: ["true", "false"]
  - match: "phone"
    pattern: "^\\+[0-9]{6,15}$"
    max_length: 16
  - match: "partner_*"
    read: ["partner-app"]
    write: ["partner-app"]
  - match: "premium"
    write: []
    max_values: 1
  - match: "langs"
    max_values: 2
`

func policyFixture(t *testing.T, file string) *fixture {
	t.Helper()
	rules, err := userattrs.ParseAttributeRules([]byte(file), userattrs.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	policy, err := userattrs.NewPolicy(userattrs.PolicyConfig{Reserved: userattrs.DefaultReserved, Hidden: []string{"internal_*"}, Rules: rules})
	if err != nil {
		t.Fatal(err)
	}
	return newFixture(t, func(o *options) { o.policy = policy })
}

// Every rule kind, on every route (self-service GET and PUT, admin GET
// and PUT), for each client: the partner app, another app, a backend.
func TestAttributePolicy(t *testing.T) {
	f := policyFixture(t, examplePolicy)
	const user = "alice"
	partner := f.clientToken("partner-app", user, read, write)
	other := f.clientToken("mobile-app", user, read, write)
	backend := f.adminToken()
	adminPut := func(body string, headers ...string) response {
		return f.do("PUT", adminPath(user), body, append([]string{"Authorization", "Bearer " + backend, "Content-Type", "application/json"}, headers...)...)
	}
	adminGet := func() map[string]any {
		res := f.do("GET", adminPath(user), "", "Authorization", "Bearer "+backend)
		var m map[string]any
		if res.status != 200 || json.Unmarshal(res.body, &m) != nil {
			t.Fatalf("admin GET: %d %s", res.status, res.body)
		}
		return m
	}

	// Writes: who may write what.
	for _, tc := range []struct {
		name   string
		put    func(string, ...string) response
		body   string
		status int
		code   string
		ptrs   []string
	}{
		{"the partner writes its attribute", func(b string, h ...string) response { return f.put(partner, b, h...) }, `{"partner_score":"7"}`, 204, "", nil},
		{"another app may not write the partner's", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"partner_score":"1"}`, 403, "attribute-read-only", []string{"/partner_score"}},
		{"nor remove it", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"partner_score":null}`, 403, "attribute-read-only", []string{"/partner_score"}},
		{"no app writes an entitlement", func(b string, h ...string) response { return f.put(partner, b, h...) }, `{"premium":"yes"}`, 403, "attribute-read-only", []string{"/premium"}},
		{"the backend writes it", adminPut, `{"premium":"yes"}`, 204, "", nil},
		{"the backend writes the partner's", adminPut, `{"partner_tier":"gold"}`, 204, "", nil},
		{"an entitlement has one value, even for the backend", adminPut, `{"premium":["a","b"]}`, 422, "invalid-attribute", []string{"/premium"}},
		{"an enum value", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"tos_accepted":"maybe"}`, 422, "invalid-attribute", []string{"/tos_accepted"}},
		{"an enum value through the admin API", adminPut, `{"tos_accepted":"maybe"}`, 422, "invalid-attribute", []string{"/tos_accepted"}},
		{"an enum element", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"tos_accepted":["true","maybe"]}`, 422, "invalid-attribute", []string{"/tos_accepted/1"}},
		{"an allowed enum value", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"tos_accepted":"true"}`, 204, "", nil},
		{"a pattern", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"phone":"0612345678"}`, 422, "invalid-attribute", []string{"/phone"}},
		{"a pattern's element", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"phone":["+33612345678","06"]}`, 422, "invalid-attribute", []string{"/phone/1"}},
		{"a length", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"phone":"+3361234567812345"}`, 422, "invalid-attribute", []string{"/phone"}},
		{"a matching phone", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"phone":"+33612345678"}`, 204, "", nil},
		{"too many values", func(b string, h ...string) response { return f.put(other, b, h...) }, `{"langs":["fr","de","en"]}`, 422, "invalid-attribute", []string{"/langs"}},
		{"a body breaking two rules changes nothing", func(b string, h ...string) response { return f.put(other, b, h...) },
			`{"referred":"yes","tos_accepted":"maybe","phone":"x"}`, 422, "invalid-attribute", []string{"/tos_accepted", "/phone"}},
		{"a hidden attribute stays out of the backend's reach", adminPut, `{"internal_flag":"1"}`, 403, "attribute-read-only", []string{"/internal_flag"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := adminGet()
			res := tc.put(tc.body)
			if tc.status == 204 {
				if res.status != 204 {
					t.Fatalf("%d %s", res.status, res.body)
				}
				return
			}
			doc := res.errors(t, tc.status, tc.code)
			if !slices.Equal(doc.pointers(), tc.ptrs) {
				t.Fatalf("pointers %q, want %q", doc.pointers(), tc.ptrs)
			}
			if tc.status == 422 && !strings.Contains(doc.Errors[0].Detail, "of the attribute policy") {
				t.Fatalf("the detail names no rule: %q", doc.Errors[0].Detail)
			}
			if after := adminGet(); !mapsEqual(before, after) {
				t.Fatalf("a refused body changed %v to %v", before, after)
			}
		})
	}

	// Reads: the partner's attributes are the partner's, and the backend's.
	seen := func(tok string) map[string]any { return f.attributes(tok) }
	if got := seen(partner); got["partner_score"] != "7" || got["partner_tier"] != "gold" || got["premium"] != "yes" {
		t.Fatalf("the partner reads %v", got)
	}
	if got := seen(other); got["partner_score"] != nil || got["partner_tier"] != nil || got["premium"] != "yes" || got["phone"] == nil {
		t.Fatalf("another app reads %v", got)
	}
	if got := adminGet(); got["partner_score"] != "7" || got["internal_flag"] != nil {
		t.Fatalf("the backend reads %v", got)
	}

	// Each client's entity tag covers what it sees: another app's
	// conditional PUT holds across the partner's writes, and its merge
	// leaves the partner's attributes alone.
	etag := f.get(other).header.Get("ETag")
	if partnerTag := f.get(partner).header.Get("ETag"); partnerTag == etag {
		t.Fatal("two clients that see different attributes get one entity tag")
	}
	if res := f.put(partner, `{"partner_score":"8"}`); res.status != 204 {
		t.Fatalf("partner PUT: %d %s", res.status, res.body)
	}
	if res := f.put(other, `{"referred":"yes"}`, "If-Match", etag); res.status != 204 {
		t.Fatalf("a conditional PUT over what the app sees, after the partner's write: %d %s", res.status, res.body)
	}
	if res := f.put(other, `{"referred":"no"}`, "If-Match", etag); res.status != 412 {
		t.Fatalf("a conditional PUT with a stale tag: %d", res.status)
	}
	if got := adminGet(); got["partner_score"] != "8" || got["referred"] != "yes" {
		t.Fatalf("after both merges: %v", got)
	}
}

func mapsEqual(a, b map[string]any) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}
