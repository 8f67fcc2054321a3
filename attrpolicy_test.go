package userattrs_test

import (
	"strings"
	"testing"

	"github.com/userattrs/userattrs"
)

// A file with anything wrong is refused whole, with one line naming the
// rule and the problem.
func TestAttributeRulesRefused(t *testing.T) {
	for _, tc := range []struct{ file, want string }{
		{"attributes:\n  - match: a\n    colour: red\n", `rule 1 (match "a"): json: unknown field "colour"`},
		{"attributes:\n  - enum: [x]\n", "rule 1: match is required"},
		{"attributes:\n  - match: ok\n  - match: \"bad\\u0001*\"\n", `rule 2 (match "bad\x01*"): match is not a glob of attribute names`},
		{"attributes:\n  - match: phone\n    pattern: \"[0-9\"\n", `rule 1 (match "phone"): pattern is not an RE2 regular expression`},
		{"attributes:\n  - match: phone\n    pattern: \"(?<=x)\"\n", `rule 1 (match "phone"): pattern is not an RE2`},
		{"attributes:\n  - match: plan\n    enum: [\"" + strings.Repeat("x", 2049) + "\"]\n", `rule 1 (match "plan"): enum value 1 is 2049 bytes long, past the limit of 2048`},
		{"attributes:\n  - match: plan\n    max_length: 5\n    enum: [basic, premium]\n", `enum value 2 is 7 bytes long, past the limit of 5`},
		{"attributes:\n  - match: plan\n    enum: []\n", "enum must list at least one value"},
		{"attributes:\n  - match: plan\n    max_values: 0\n", "max_values must be from 1 to 64"},
		{"attributes:\n  - match: plan\n    max_length: 4096\n", "max_length must be from 1 to 2048"},
		{"attributes:\n  - match: plan\n    write: [\"\"]\n", "write lists an empty client id"},
		{"attributes:\n  - match: plan\n    read: partner\n", "rule 1 (match \"plan\"): json: cannot unmarshal string"},
		{"rules: []\n", `the file must be a mapping with the one key "attributes"`},
		{"attributes: [\n", "not YAML"},
	} {
		_, err := userattrs.ParseAttributeRules([]byte(tc.file), userattrs.DefaultLimits)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: %v; want one line with %q", tc.file, err, tc.want)
		}
	}
}

// The version names the content; a file without rules is valid.
func TestAttributeRulesVersion(t *testing.T) {
	a, err := userattrs.ParseAttributeRules([]byte("attributes: []\n"), userattrs.DefaultLimits)
	b, err2 := userattrs.ParseAttributeRules([]byte("attributes:\n  - match: x\n"), userattrs.DefaultLimits)
	if err != nil || err2 != nil || len(a.Version) != 12 || a.Version == b.Version {
		t.Fatalf("%v %v %+v %+v", err, err2, a, b)
	}
}
