package strictjson

import "testing"

func TestObject(t *testing.T) {
	for body, exact := range map[string]bool{
		`{"a":"1","b":["x"],"c":{"a":1}}`: true,
		`{"s":"\ud83d\ude00"}`:            true,
		`{"s":"\\ud800"}`:                 true, // an escaped backslash, not a surrogate
		`{"a":"1","a":"2"}`:               false,
		`{"a":"1","\u0061":"2"}`:          false,
		`{"s":"\ud800"}`:                  false,
		`{"s":"\udc00x"}`:                 false,
		"{\"s\":\"\xff\"}":                false,
		`["a"]`:                           false,
		`{"a":`:                           false,
	} {
		if got := Object([]byte(body)) == nil; got != exact {
			t.Errorf("Object(%q) exact = %v, want %v", body, got, exact)
		}
	}
}
