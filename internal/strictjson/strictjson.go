// Package strictjson finds what encoding/json lets through silently in
// input that must be taken exactly as sent: invalid UTF-8 and escaped lone
// UTF-16 surrogates (both become U+FFFD, so different inputs read the
// same), and member names given twice (the last one wins).
package strictjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ErrNotExact: the input holds something encoding/json would change or
// drop without saying so.
var ErrNotExact = errors.New("JSON with invalid UTF-8, a lone surrogate or a duplicate member name")

// Object checks that b is a JSON object that encoding/json would read
// exactly: valid UTF-8, no lone surrogate, every member name once at the
// top level.
func Object(b []byte) error {
	if !utf8.Valid(b) || LoneSurrogate(b) || !json.Valid(b) {
		return ErrNotExact
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return ErrNotExact
	}
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return ErrNotExact
		}
		name := tok.(string) // inside an object the decoder yields names only
		if seen[name] {
			return ErrNotExact
		}
		seen[name] = true
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return ErrNotExact
		}
	}
	return nil
}

// LoneSurrogate reports whether b has a \u escape of a UTF-16 surrogate
// that is not half of a high-low pair (RFC 8259, section 8.2). Only escapes
// can hold one in valid UTF-8.
func LoneSurrogate(b []byte) bool {
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		i++ // the escaped character; an escaped backslash is skipped whole
		if i >= len(b) || b[i] != 'u' {
			continue
		}
		r, ok := hex4(b[i+1:])
		if !ok {
			continue
		}
		i += 4
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true // a low half without a high one
		case r >= 0xD800 && r <= 0xDBFF:
			if i+6 >= len(b) || b[i+1] != '\\' || b[i+2] != 'u' {
				return true
			}
			low, ok := hex4(b[i+3:])
			if !ok || low < 0xDC00 || low > 0xDFFF {
				return true
			}
			i += 6
		}
	}
	return false
}

// hex4 reads four hex digits.
func hex4(b []byte) (rune, bool) {
	if len(b) < 4 {
		return 0, false
	}
	var r rune
	for _, c := range b[:4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
