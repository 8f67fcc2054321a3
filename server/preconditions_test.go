package server

import "testing"

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
	}
	for _, tc := range cases {
		if got := ifMatch(tc.values).Holds(cur); got != tc.holds {
			t.Errorf("If-Match %q holds = %v, want %v", tc.values, got, tc.holds)
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
