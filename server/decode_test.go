package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/jsontext"
)

// FuzzDecodePatch checks the body decoder against encoding/json: it accepts
// only UTF-8 JSON objects, and what it decodes is what encoding/json sees,
// each member classified by the contract's type rules.
func FuzzDecodePatch(f *testing.F) {
	for _, seed := range []string{
		`{"referred":"false","tos_accepted":"true"}`, `{}`, `{"a":null}`, `{"a":[]}`, `{"a":["x","y"]}`,
		`{"a":1}`, `{"a":true,"b":{"c":[1,{"d":null}]},"e":[["x"]]}`, `{"a":"1","a":"2"}`, `{"a":"1","\u0061":"2"}`,
		`["a"]`, `"a"`, `null`, ``, ` `, `{`, `{"a":}`, `{"a":"1"} x`, `{}{}`, "{\"a\":\"\xff\"}",
		`{"k\u00e9y":"v\n\"\u263a\""}`, `{"a":"\ud800"}`, `{"a":"\ud83d\ude00"}`, `{"a":"\\ud800"}`, `{"a":"\udc00x"}`, `{"a":1e999}`, ` {"a" : [ "x" , "y" ] } `,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		patch, derr := decodePatch(body)
		var reference map[string]any
		ref := json.NewDecoder(bytes.NewReader(body))
		ref.UseNumber()
		refErr := ref.Decode(&reference)
		if refErr == nil && ref.More() {
			refErr = errors.New("trailing data")
		}
		if derr != nil {
			if derr.code != codeInvalidJSON && derr.code != codeInvalidBody {
				t.Fatalf("error code %q", derr.code)
			}
			if derr.code == codeInvalidJSON && utf8.Valid(body) && json.Valid(body) && !strings.Contains(derr.detail, "surrogate") {
				t.Fatalf("valid JSON %q rejected as invalid JSON: %s", body, derr.detail)
			}
			return
		}
		if !utf8.Valid(body) || refErr != nil || reference == nil {
			t.Fatalf("accepted %q, which is not a UTF-8 JSON object (%v)", body, refErr)
		}
		if len(patch) != len(reference) && !(len(patch) < len(reference) && badMembers(patch) == userattrs.MaxViolations) {
			t.Fatalf("%q: %d members decoded, encoding/json sees %d", body, len(patch), len(reference))
		}
		// Nothing is coerced: a U+FFFD in what was decoded stands in the
		// body, raw or escaped, and is no replaced lone surrogate.
		mayHoldFFFD := bytes.ContainsRune(body, utf8.RuneError) || bytes.Contains(bytes.ToLower(body), []byte(`\ufffd`))
		for _, c := range patch {
			if !mayHoldFFFD && (strings.ContainsRune(c.Key, utf8.RuneError) || strings.ContainsRune(strings.Join(c.Values, ""), utf8.RuneError)) {
				t.Fatalf("%q: member %q decoded with a replacement character the body does not hold", body, c.Key)
			}
			want, ok := reference[c.Key]
			if !ok {
				t.Fatalf("%q: decoded member %q that encoding/json does not see", body, c.Key)
			}
			if c.BadType != "" {
				if acceptable(want) {
					t.Fatalf("%q: member %q rejected as %s", body, c.Key, c.BadType)
				}
				continue
			}
			var got any
			switch {
			case len(c.Values) == 0:
				if want != nil && !reflect.DeepEqual(want, []any{}) {
					t.Fatalf("%q: member %q decoded as a removal", body, c.Key)
				}
				continue
			case len(c.Values) == 1:
				got = c.Values[0]
				if _, isArray := want.([]any); isArray {
					got = []any{c.Values[0]}
				}
			default:
				list := make([]any, len(c.Values))
				for i, v := range c.Values {
					list[i] = v
				}
				got = list
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("%q: member %q decoded as %v, encoding/json says %v", body, c.Key, got, want)
			}
		}
	})
}

func badMembers(p userattrs.Patch) int {
	n := 0
	for _, c := range p {
		if c.BadType != "" {
			n++
		}
	}
	return n
}

// A body of thousands of members of the wrong type is decoded up to the
// MaxViolations-th, which is all its answer lists; one that is not valid
// JSON past them is still 400.
func TestDecodeStopsAtMaxViolations(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"ok":"1"`)
	for i := range 4000 {
		fmt.Fprintf(&b, `,"k%d":1`, i)
	}
	valid := b.String() + "}"
	patch, derr := decodePatch([]byte(valid))
	if derr != nil || len(patch) != userattrs.MaxViolations+1 || badMembers(patch) != userattrs.MaxViolations {
		t.Fatalf("%d members decoded, %d bad, %v", len(patch), badMembers(patch), derr)
	}
	if _, derr := decodePatch([]byte(strings.Replace(valid, `{"ok":"1"`, `{"ok":"1","ok":"2"`, 1))); derr == nil || derr.code != codeInvalidBody {
		t.Fatalf("a duplicate before the bound: %v", derr)
	}
	if _, derr := decodePatch([]byte(b.String() + `,}`)); derr == nil || derr.code != codeInvalidJSON {
		t.Fatalf("invalid JSON after thousands of bad members: %v", derr)
	}
}

// acceptable reports whether a decoded JSON value is one the contract takes:
// a string, null, or an array of strings.
func acceptable(v any) bool {
	switch v := v.(type) {
	case string, nil:
		return true
	case []any:
		for _, e := range v {
			if _, ok := e.(string); !ok {
				return false
			}
		}
		return true
	}
	return false
}

// FuzzEncodeAttributes checks the response encoder against encoding/json:
// what it writes decodes to the same attributes, in the contract's shape,
// and is byte for byte what encoding/json writes for that shape, without
// HTML escapes.
func FuzzEncodeAttributes(f *testing.F) {
	for _, s := range []string{"plain", "", `quote"`, `back\slash`, "ctl\x01", "<tag>&", "line\u2028sep", "ünï ☺", "\xe2\x82\xac"} {
		f.Add("key", s, s+"2")
	}
	f.Fuzz(func(t *testing.T, key, v1, v2 string) {
		if !utf8.ValidString(key) || !utf8.ValidString(v1) || !utf8.ValidString(v2) {
			return // stored attributes are valid UTF-8
		}
		attrs := userattrs.Attributes{key: {v1}, key + "s": {v1, v2}}
		want, _ := jsontext.Marshal(map[string]any{key: v1, key + "s": []string{v1, v2}})
		if got := encodeAttributes(attrs); string(got) != string(want) {
			t.Fatalf("encodeAttributes = %s, encoding/json = %s", got, want)
		}
	})
}

// <, > and & are written as they are: six bytes for one would let a user's
// values grow the bodies everyone reads.
func TestNoHTMLEscapes(t *testing.T) {
	if got := string(encodeAttributes(userattrs.Attributes{"a": {"<b>&"}, "c": {"\"<"}})); got != `{"a":"<b>&","c":"\"<"}` {
		t.Fatalf("encodeAttributes = %s", got)
	}
}
