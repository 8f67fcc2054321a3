package sdkdecode

import (
	"reflect"
	"strings"
	"testing"
)

// The port decodes as Japx does: these are the cases the iOS SDK was found
// to break on, and the ones it passes.
func TestDecodeIOS(t *testing.T) {
	for _, tc := range []struct {
		name string
		body string
		want map[string]any // nil: decoding fails
	}{
		{"no attributes", `{}`, map[string]any{"data": []any{}}},
		{"strings and arrays", `{"a":"1","langs":["de","en"]}`,
			map[string]any{"a": "1", "langs": []any{"de", "en"}, "data": []any{}}},
		{"an attribute named data fails every GET", `{"data":"x","a":"1"}`, nil},
		{"data as a list of strings fails too", `{"data":["x","y"]}`, nil},
		{"an attribute named included vanishes", `{"included":"x","a":"1"}`, map[string]any{"a": "1", "data": []any{}}},
		{"included as a list of strings vanishes too", `{"included":["x"]}`, map[string]any{"data": []any{}}},
		{"a top-level array", `[]`, nil},
		{"not JSON", `{`, nil},
		{"a JSON:API resource", `{"data":{"type":"t","id":"1","attributes":{"k":"v"}}}`,
			map[string]any{"data": map[string]any{"type": "t", "id": "1", "k": "v"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeIOS([]byte(tc.body))
			if tc.want == nil {
				if err == nil || !strings.Contains(err.Error(), "typeMismatch") {
					t.Fatalf("decoded %v, %v; want DecodingError.typeMismatch", got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("decoded %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}

// CheckIOS accepts what an app decodes whole and fails what it does not.
func TestCheckIOS(t *testing.T) {
	CheckIOS(t, []byte(`{"a":"1","b":["x","y"],"é/\u2028":"\"quoted\""}`))
	for _, body := range []string{`{"data":"x"}`, `{"included":"x"}`} {
		var fake fakeTB
		func() {
			defer func() { recover() }()
			CheckIOS(&fake, []byte(body))
		}()
		if !fake.failed {
			t.Errorf("CheckIOS passed %s", body)
		}
	}
}

// fakeTB records a failure; Fatalf stops the check as testing's would.
type fakeTB struct {
	testing.TB
	failed bool
}

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(string, ...any) {
	f.failed = true
	panic("fatal")
}
