package userattrs_test

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/userattrs/userattrs"
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

func TestIfMatch(t *testing.T) {
	const cur = `"abc"`
	cases := []struct {
		values []string
		holds  bool
	}{
		{nil, true},
		{[]string{`"abc"`}, true},
		{[]string{`"xyz"`}, false},
		{[]string{`*`}, true},
		{[]string{`"x", "abc"`}, true},
		{[]string{`"x"`, `"abc"`}, true},
		{[]string{`W/"abc"`}, false},
		{[]string{`abc`}, false},
		{[]string{`"abc`}, false},
		{[]string{``}, false},
		{[]string{`"a,b", "abc"`}, true},
	}
	for _, tc := range cases {
		if got := userattrs.IfMatch(tc.values).Holds(cur); got != tc.holds {
			t.Errorf("If-Match %q holds = %v, want %v", tc.values, got, tc.holds)
		}
	}
}

func TestPolicy(t *testing.T) {
	p, err := userattrs.NewPolicy([]string{"LDAP_*", "secret"}, []string{"tos_*", "a?c", "x.y"})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		key              string
		hidden, writable bool
	}{
		{"LDAP_ID", true, false}, {"LDAP_", true, false}, {"ldap_id", false, true},
		{"secret", true, false}, {"secrets", false, true},
		{"tos_accepted", false, false}, {"tos_/x/y", false, false}, {"abc", false, false}, {"abbc", false, true},
		{"x.y", false, false}, {"xzy", false, true}, {"referred", false, true},
	}
	for _, tc := range cases {
		if p.Hidden(tc.key) != tc.hidden || p.Writable(tc.key) != tc.writable {
			t.Errorf("%s: hidden=%v writable=%v, want %v %v", tc.key, p.Hidden(tc.key), p.Writable(tc.key), tc.hidden, tc.writable)
		}
	}
	visible := p.Visible(userattrs.Attributes{"LDAP_ID": {"1"}, "tos_accepted": {"true"}})
	if len(visible) != 1 || visible["tos_accepted"] == nil {
		t.Fatalf("Visible = %v", visible)
	}
	var none userattrs.Policy
	if none.Hidden("x") || !none.Writable("x") {
		t.Fatal("the zero policy restricts")
	}
}

func TestValidate(t *testing.T) {
	l := userattrs.DefaultLimits
	ok := func(k string, v ...string) userattrs.Change { return userattrs.Change{Key: k, Values: v, BadIndex: -1} }
	cases := []struct {
		name    string
		change  userattrs.Change
		pointer string // "" when valid
	}{
		{"plain", ok("tos_accepted", "true"), ""},
		{"remove", ok("gone"), ""},
		{"max key", ok(strings.Repeat("k", 255), "v"), ""},
		{"max value", ok("k", strings.Repeat("v", 2048)), ""},
		{"max values", ok("k", make([]string, 64)...), ""},
		{"unicode key", ok("schlüssel/🔑", "v"), ""},
		{"empty key", ok("", "v"), "/"},
		{"key too long", ok(strings.Repeat("k", 256), "v"), "/" + strings.Repeat("k", 256)},
		{"multi-byte key too long", ok(strings.Repeat("é", 128), "v"), "/" + strings.Repeat("é", 128)},
		{"NUL in key", ok("a\x00b", "v"), "/a\x00b"},
		{"DEL in key", ok("a\x7fb", "v"), "/a\x7fb"},
		{"C1 control in key", ok("a\u0085b", "v"), "/a\u0085b"},
		{"invalid UTF-8 key", ok("a\xffb", "v"), "/a\xffb"},
		{"value too long", ok("k", strings.Repeat("v", 2049)), "/k"},
		{"invalid UTF-8 value", ok("k", "\xff"), "/k"},
		{"too many values", ok("k", make([]string, 65)...), "/k"},
		{"wrong type", userattrs.Change{Key: "k", BadType: "a number", BadIndex: -1}, "/k"},
		{"wrong element type", userattrs.Change{Key: "k", BadType: "a number", BadIndex: 3}, "/k/3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := l.Validate(userattrs.Patch{ok("fine", "x"), tc.change})
			if tc.pointer == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			var invalid *userattrs.InvalidError
			if !errors.As(err, &invalid) || len(invalid.Violations) != 1 || invalid.Violations[0].Pointer != userattrs.Pointer(tc.change.Key, tc.change.BadIndex) {
				t.Fatalf("Validate = %v, want one violation at %q", err, tc.pointer)
			}
			if tc.change.Key != "" && tc.change.Key != "a\xffb" && invalid.Violations[0].Pointer != tc.pointer {
				t.Fatalf("pointer %q, want %q", invalid.Violations[0].Pointer, tc.pointer)
			}
			for _, v := range tc.change.Values {
				if len(v) >= 4 && strings.Contains(invalid.Violations[0].Detail, v) {
					t.Fatalf("detail quotes the value")
				}
			}
		})
	}
}

func TestPointer(t *testing.T) {
	for key, want := range map[string]string{"a": "/a", "a/b": "/a~1b", "m~n": "/m~0n", "~/": "/~0~1", "": "/"} {
		if got := userattrs.Pointer(key, -1); got != want {
			t.Errorf("Pointer(%q) = %q, want %q", key, got, want)
		}
	}
	if got := userattrs.Pointer("a", 2); got != "/a/2" {
		t.Errorf("element pointer %q", got)
	}
}

// FuzzValidate checks the key and value rules against their definition:
// whatever the input, Validate accepts exactly the changes the contract
// allows.
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
		if (err == nil) != (keyOK && valuesOK) {
			t.Fatalf("Validate(%q, %d×%d bytes) = %v; key ok %v, values ok %v", key, n, len(value), err, keyOK, valuesOK)
		}
	})
}

func isControl(r rune) bool { return r < 0x20 || (r >= 0x7f && r < 0xa0) }
