package server

import (
	"slices"
	"strings"
	"testing"
)

func TestIfMatchFields(t *testing.T) {
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
		{[]string{`*, garbage`}, false},
		{[]string{`*, "abc"`}, false},
		{[]string{`*`, `"abc"`}, false},
		{[]string{`"abc" "x"`}, false},
		{[]string{`, "abc" ,`}, true},
		{[]string{` , `}, false},
	}
	for _, tc := range cases {
		if ifMatch(tc.values).Holds(cur) != tc.holds {
			t.Errorf("If-Match %q holds = %v, want %v", tc.values, !tc.holds, tc.holds)
		}
	}
}

func TestIfNoneMatchFields(t *testing.T) {
	const cur = `"abc"`
	cases := []struct {
		values []string
		match  bool
	}{
		{nil, false},
		{[]string{`"abc"`}, true},
		{[]string{`W/"abc"`}, true},
		{[]string{`"x", W/"abc"`}, true},
		{[]string{`*`}, true},
		{[]string{`"xyz"`}, false},
		{[]string{`"a,b"`, `"c"`}, false},
		{[]string{`abc`}, false},
	}
	for _, tc := range cases {
		if got := noneMatch(tc.values, cur); got != tc.match {
			t.Errorf("If-None-Match %q names %s = %v, want %v", tc.values, cur, got, tc.match)
		}
	}
}

func TestPointer(t *testing.T) {
	for key, want := range map[string]string{"a": "/a", "a/b": "/a~1b", "m~n": "/m~0n", "~/": "/~0~1", "": "/"} {
		if got := pointer(key, -1); got != want {
			t.Errorf("pointer(%q) = %q, want %q", key, got, want)
		}
	}
	if got := pointer("a", 2); got != "/a/2" {
		t.Errorf("element pointer %q", got)
	}
}

// FuzzEntityTags checks the If-Match and If-None-Match parser: every tag it
// returns is one quoted string, the list it parses reads back the same when
// written out again, and a field it cannot parse lets no write through.
func FuzzEntityTags(f *testing.F) {
	for _, s := range []string{`"abc"`, `*`, `W/"x", "y"`, `"a,b"`, ``, `"`, `W/`, `*, "x"`, "\"\x00\"", `""`, ` , ,"x" `, `W/"x`} {
		f.Add(s, `"x"`)
	}
	f.Fuzz(func(t *testing.T, field, second string) {
		values := []string{field, second}
		l := parseEntityTags(values)
		if !l.ok {
			if l.any || len(l.strong) > 0 || len(l.weak) > 0 {
				t.Fatalf("%q: malformed, yet parsed to %+v", values, l)
			}
			if ifMatch(values).Holds(`"x"`) || noneMatch(values, `"x"`) {
				t.Fatalf("%q: a malformed field matched", values)
			}
			return
		}
		var written []string
		if l.any {
			written = append(written, "*")
		}
		for _, tags := range [][]string{l.strong, l.weak} {
			for _, tag := range tags {
				if len(tag) < 2 || tag[0] != '"' || tag[len(tag)-1] != '"' || strings.Contains(tag[1:len(tag)-1], `"`) {
					t.Fatalf("%q: parsed a tag %q that is not one quoted string", values, tag)
				}
			}
		}
		written = append(written, l.strong...)
		for _, tag := range l.weak {
			written = append(written, "W/"+tag)
		}
		again := parseEntityTags([]string{strings.Join(written, ", ")})
		if !again.ok || again.any != l.any || !slices.Equal(again.strong, l.strong) || !slices.Equal(again.weak, l.weak) {
			t.Fatalf("%q parsed to %+v, written out and parsed again to %+v", values, l, again)
		}
		for _, tag := range l.strong {
			if !ifMatch(values).Holds(tag) {
				t.Fatalf("%q: If-Match does not hold for its own strong tag %s", values, tag)
			}
		}
	})
}
