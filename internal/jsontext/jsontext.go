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
