package userattrs_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/store"
)

func TestETag(t *testing.T) {
	a := userattrs.Attributes{"a": {"1", "2"}, "b": {"3"}}
	same := userattrs.Attributes{"b": {"3"}, "a": {"1", "2"}}
	if a.ETag() != same.ETag() {
		t.Fatal("the same attributes in another map order have another ETag")
	}
	// Sets that a naive concatenation would confuse.
	different := []userattrs.Attributes{
		{}, {"a": {"1"}}, {"a": {"12"}}, {"a1": {"2"}}, {"a": {"1", "2"}}, {"a": {"2", "1"}},
		{"a": {"12", ""}}, {"a": {"", "12"}}, {"a": {""}}, {"a": {}}, {"a": {"1"}, "b": {"2"}}, {"a": {"1", "b", "2"}},
	}
	seen := map[string]int{}
	for i, d := range different {
		tag := d.ETag()
		if !strings.HasPrefix(tag, `"`) || !strings.HasSuffix(tag, `"`) || strings.Count(tag, `"`) != 2 {
			t.Fatalf("ETag %s is not a quoted strong tag", tag)
		}
		if j, dup := seen[tag]; dup {
			t.Fatalf("sets %v and %v share an ETag", different[j], d)
		}
		seen[tag] = i
	}
}

func TestPolicy(t *testing.T) {
	p, err := userattrs.NewPolicy(userattrs.PolicyConfig{Hidden: []string{"LDAP_*", "secret"}, ReadOnly: []string{"tos_*", "a?c", "x.y"}, Reserved: userattrs.DefaultReserved})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key                        string
		hidden, writable, reserved bool
	}{
		{"LDAP_ID", true, false, false}, {"LDAP_", true, false, false}, {"ldap_id", false, true, false},
		{"secret", true, false, false}, {"secrets", false, true, false},
		{"tos_accepted", false, false, false}, {"tos_/x/y", false, false, false}, {"abc", false, false, false}, {"abbc", false, true, false},
		{"x.y", false, false, false}, {"xzy", false, true, false}, {"referred", false, true, false},
		// Reserved names may be removed (writable), never set.
		{"data", false, true, true}, {"included", false, true, true}, {"Data", false, true, false}, {"datas", false, true, false},
	}
	for _, tc := range cases {
		if p.Hidden(tc.key) != tc.hidden || p.Writable(tc.key) != tc.writable || p.Reserved(tc.key) != tc.reserved {
			t.Errorf("%s: hidden=%v writable=%v reserved=%v, want %v %v %v", tc.key, p.Hidden(tc.key), p.Writable(tc.key),
				p.Reserved(tc.key), tc.hidden, tc.writable, tc.reserved)
		}
	}
	visible := p.Visible(userattrs.Attributes{"LDAP_ID": {"1"}, "tos_accepted": {"true"}, "data": {"x"}})
	if len(visible) != 1 || visible["tos_accepted"] == nil {
		t.Fatalf("Visible = %v", visible)
	}
	// With nothing to leave out, Visible copies nothing (names without
	// wildcards: a regular expression's matcher comes from a sync.Pool,
	// which the race detector empties at random).
	literal, _ := userattrs.NewPolicy(userattrs.PolicyConfig{Hidden: []string{"secret"}, Reserved: userattrs.DefaultReserved})
	all := userattrs.Attributes{"a": {"1"}, "b": {"2"}}
	if allocs := testing.AllocsPerRun(100, func() { literal.Visible(all) }); allocs != 0 {
		t.Errorf("Visible of attributes it keeps whole allocates %v times", allocs)
	}
	var none userattrs.Policy
	if none.Hidden("x") || !none.Writable("x") || none.Reserved("data") || len(none.Visible(userattrs.Attributes{"data": {"x"}})) != 1 {
		t.Fatal("the zero policy restricts")
	}
}

func TestValidate(t *testing.T) {
	const valid = -2
	l := userattrs.DefaultLimits
	ok := func(k string, v ...string) userattrs.Change { return userattrs.Change{Key: k, Values: v, BadIndex: -1} }
	cases := []struct {
		name   string
		change userattrs.Change
		index  int // of the violation; valid when no violation is wanted
	}{
		{"plain", ok("tos_accepted", "true"), valid},
		{"remove", ok("gone"), valid},
		{"max key", ok(strings.Repeat("k", 255), "v"), valid},
		{"max value", ok("k", strings.Repeat("v", 2048)), valid},
		{"max values", ok("k", make([]string, 64)...), valid},
		{"unicode key", ok("schlüssel/🔑", "v"), valid},
		{"empty key", ok("", "v"), -1},
		{"key too long", ok(strings.Repeat("k", 256), "v"), -1},
		{"multi-byte key too long", ok(strings.Repeat("é", 128), "v"), -1},
		{"NUL in key", ok("a\x00b", "v"), -1},
		{"DEL in key", ok("a\x7fb", "v"), -1},
		{"C1 control in key", ok("a\u0085b", "v"), -1},
		{"invalid UTF-8 key", ok("a\xffb", "v"), -1},
		{"value too long", ok("k", strings.Repeat("v", 2049)), -1},
		{"invalid UTF-8 value", ok("k", "\xff"), -1},
		{"too many values", ok("k", make([]string, 65)...), -1},
		{"wrong type", userattrs.Change{Key: "k", BadType: "a number", BadIndex: -1}, -1},
		{"wrong element type", userattrs.Change{Key: "k", BadType: "a number", BadIndex: 3}, 3},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := l.Validate(userattrs.Patch{ok("fine", "x"), tc.change})
			if tc.index == valid {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var invalid *userattrs.InvalidError
			if !errors.As(err, &invalid) || len(invalid.Violations) != 1 {
				t.Fatalf("Validate = %v, want one violation", err)
			}
			if v := invalid.Violations[0]; v.Key != tc.change.Key || v.Index != tc.index {
				t.Fatalf("violation of %q at %d, want %q at %d", v.Key, v.Index, tc.change.Key, tc.index)
			}
			for _, v := range tc.change.Values {
				if len(v) >= 4 && strings.Contains(invalid.Violations[0].Detail, v) {
					t.Fatalf("detail quotes the value")
				}
			}
		})
	}
}

// A body of thousands of bad members lists the first MaxViolations, in body
// order, and costs no more to check than one of that many: past them
// nothing is checked or formatted.
func TestValidateStopsAtMaxViolations(t *testing.T) {
	bad := func(n int) userattrs.Patch {
		p := make(userattrs.Patch, n)
		for i := range p {
			p[i] = userattrs.Change{Key: "k" + strconv.Itoa(i), BadType: "a number", BadIndex: -1}
		}
		return p
	}
	var invalid *userattrs.InvalidError
	if err := userattrs.DefaultLimits.Validate(bad(4000)); !errors.As(err, &invalid) ||
		len(invalid.Violations) != userattrs.MaxViolations || invalid.Violations[99].Key != "k99" {
		t.Fatalf("4000 bad members: %v", err)
	}
	few, many := bad(userattrs.MaxViolations), bad(4000)
	fewAllocs := testing.AllocsPerRun(20, func() { userattrs.DefaultLimits.Validate(few) })
	manyAllocs := testing.AllocsPerRun(20, func() { userattrs.DefaultLimits.Validate(many) })
	// Twice as many at most: the race detector's sync.Pool drops what it
	// pools at random, which fmt's printers feel; checking all 4,000
	// would allocate forty times as many.
	if manyAllocs > 2*fewAllocs {
		t.Fatalf("checking 4000 bad members allocates %v times, %d of them %v", manyAllocs, userattrs.MaxViolations, fewAllocs)
	}
	// So do members that break a per-user bound together.
	l := userattrs.DefaultLimits
	l.MaxAttributes = 1
	adds := make(userattrs.Patch, 500)
	for i := range adds {
		adds[i] = userattrs.Change{Key: "a" + strconv.Itoa(i), Values: []string{"v"}, BadIndex: -1}
	}
	if err := l.Validate(adds); !errors.As(err, &invalid) || len(invalid.Violations) != userattrs.MaxViolations {
		t.Fatalf("500 members past the attribute bound: %v", err)
	}
}

// A panicking updater is an error of its update, never a crash.
func TestNextRecoversPanics(t *testing.T) {
	_, _, err := store.Next(userattrs.Attributes{}, func(userattrs.Attributes) (userattrs.Attributes, error) {
		panic("secret value")
	})
	var p *userattrs.PanicError
	if !errors.As(err, &p) || len(p.Stack) == 0 || strings.Contains(err.Error(), "secret") {
		t.Fatalf("Next of a panicking updater: %v", err)
	}
}

// FuzzValidate checks the key and value rules against their definition:
// whatever the input, Validate accepts exactly the changes the contract
// allows, within the bound on a user's total bytes, which a change alone
// may break.
func FuzzValidate(f *testing.F) {
	for _, s := range []string{"tos_accepted", "", "a\x00", "\xff", "é", strings.Repeat("k", 256), "a/b~c"} {
		f.Add(s, "value", 1)
	}
	f.Add("k", strings.Repeat("v", 2049), 1)
	f.Add("k", "v", 65)
	f.Fuzz(func(t *testing.T, key, value string, n int) {
		n = n % 100
		if n < 0 {
			n = -n
		}
		values := make([]string, n)
		for i := range values {
			values[i] = value
		}
		l := userattrs.DefaultLimits
		err := l.Validate(userattrs.Patch{{Key: key, Values: values, BadIndex: -1}})
		keyOK := len(key) >= 1 && len(key) <= 255 && utf8.ValidString(key) && !strings.ContainsFunc(key, isControl)
		valuesOK := n <= 64 && (n == 0 || (len(value) <= 2048 && utf8.ValidString(value)))
		sizeOK := n == 0 || len(key)+n*len(value) <= l.MaxUserBytes
		if (err == nil) != (keyOK && valuesOK && sizeOK) {
			t.Fatalf("Validate(%q, %d×%d bytes) = %v; key ok %v, values ok %v, size ok %v", key, n, len(value), err, keyOK, valuesOK, sizeOK)
		}
	})
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }
