package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/strictjson"
)

// decodeError is a body that is not a JSON object of unique members: a 400.
type decodeError struct {
	code   string // codeInvalidJSON or codeInvalidBody
	detail string
}

func (e *decodeError) Error() string { return e.detail }

func syntaxError(err error) *decodeError {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return &decodeError{codeInvalidJSON, fmt.Sprintf("the body is not valid JSON (at byte %d)", se.Offset)}
	}
	// Details of other decoder errors can quote the body; say only what
	// kind of problem it is.
	return &decodeError{codeInvalidJSON, "the body is not valid JSON"}
}

// decodePatch parses a PUT body: a JSON object whose members name
// attributes. It rejects what is not such an object (invalid JSON or UTF-8,
// another JSON type, duplicate member names, data after the object) and
// records members of the wrong type in the patch, for the domain to reject
// with a pointer. It never quotes the body in an error.
//
// A body of valid JSON whose members of the wrong type reach
// userattrs.MaxViolations is refused on them alone: decoding stops there,
// since the answer lists no more, so that thousands of bad members cost
// what a hundred do (member by member decoding is most of what such a body
// costs). Past that point a member named twice goes unreported.
func decodePatch(body []byte) (userattrs.Patch, *decodeError) {
	// encoding/json would silently replace invalid UTF-8, and escaped lone
	// surrogates, with U+FFFD: a value changed behind the client's back.
	if !utf8.Valid(body) {
		return nil, &decodeError{codeInvalidJSON, "the body is not valid UTF-8"}
	}
	if strictjson.LoneSurrogate(body) {
		return nil, &decodeError{codeInvalidJSON, "the body escapes a lone UTF-16 surrogate, which is no character"}
	}
	// The scanner alone is many times faster than the decoding below: a
	// body it finds valid may be refused part-way.
	valid := json.Valid(body)
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	tok, err := dec.Token()
	if err == io.EOF {
		return nil, &decodeError{codeInvalidJSON, "the body is empty; send a JSON object, {} to change nothing"}
	}
	if err != nil {
		return nil, syntaxError(err)
	}
	if tok != json.Delim('{') {
		return nil, &decodeError{codeInvalidBody, "the body must be a JSON object of attributes"}
	}
	patch := userattrs.Patch{}
	seen := map[string]bool{}
	bad := 0
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, syntaxError(err)
		}
		key := tok.(string) // inside an object the decoder yields names only
		if seen[key] {
			return nil, &decodeError{codeInvalidBody, fmt.Sprintf(
				"the member %s appears more than once", pointer(key, -1))}
		}
		seen[key] = true
		change, err := decodeValue(dec, key)
		if err != nil {
			return nil, syntaxError(err)
		}
		patch = append(patch, change)
		if change.BadType != "" {
			if bad++; bad == userattrs.MaxViolations && valid {
				return patch, nil
			}
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return nil, syntaxError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, &decodeError{codeInvalidJSON, "the body has data after the JSON object"}
	}
	return patch, nil
}

// decodeValue reads the value of member key.
func decodeValue(dec *json.Decoder, key string) (userattrs.Change, error) {
	change := userattrs.Change{Key: key, BadIndex: -1}
	tok, err := dec.Token()
	if err != nil {
		return change, err
	}
	switch v := tok.(type) {
	case string:
		change.Values = []string{v}
	case nil:
	case json.Delim: // '{' or '['
		if v == '{' {
			change.BadType = "an object"
			return change, skipRest(dec)
		}
		change.Values, change.Array = []string{}, true
		for i := 0; dec.More(); i++ {
			tok, err := dec.Token()
			if err != nil {
				return change, err
			}
			if s, ok := tok.(string); ok {
				change.Values = append(change.Values, s)
				continue
			}
			if change.BadType == "" {
				change.BadType, change.BadIndex = jsonType(tok), i
			}
			if d, ok := tok.(json.Delim); ok && (d == '{' || d == '[') {
				if err := skipRest(dec); err != nil {
					return change, err
				}
			}
		}
		if _, err := dec.Token(); err != nil { // the closing bracket
			return change, err
		}
		if change.BadType != "" {
			change.Values = nil
		}
	default:
		change.BadType = jsonType(tok)
	}
	return change, nil
}

// skipRest consumes the rest of an object or array whose opening delimiter
// was just read.
func skipRest(dec *json.Decoder) error {
	for depth := 1; depth > 0; {
		tok, err := dec.Token()
		if err != nil {
			return err
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			depth++
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
	return nil
}

func jsonType(tok json.Token) string {
	switch tok.(type) {
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	case json.Delim:
		if tok == json.Delim('[') {
			return "an array"
		}
		return "an object"
	}
	return "a string"
}
