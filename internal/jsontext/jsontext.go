// Package jsontext writes JSON as the bodies and columns of this service
// need it: without the HTML escapes of encoding/json.
package jsontext

import (
	"bytes"
	"encoding/json"
)

// Marshal is json.Marshal without escaping <, > and &: escaping them guards
// JSON pasted into HTML, which no body or column of this service is, and
// costs six bytes for one, which a user could fill their values with.
func Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// AppendString appends s as a JSON string: verbatim between quotes when it
// holds nothing to escape, which is what attribute names and values almost
// always are, through encoding/json otherwise. s must be valid UTF-8.
func AppendString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if escaped[s[i]] {
			quoted, _ := Marshal(s) // a string always encodes
			return append(b, quoted...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

// escaped are the bytes after which a string needs encoding/json: control
// characters, quote and backslash must be escaped, and encoding/json
// escapes U+2028/U+2029 (lead byte 0xE2), whose output AppendString keeps
// byte for byte. <, > and & need no escape in JSON.
var escaped = func() (t [256]bool) {
	for c := range 0x20 {
		t[c] = true
	}
	t['"'], t['\\'], t[0xE2] = true, true, true
	return t
}()
