package userattrs

import (
	"fmt"
	"regexp"
	"strings"
)

// Policy decides which attributes clients may see and write. Hidden
// attributes are never returned and cannot be written; read-only ones are
// returned but cannot be written. Operators name them with glob patterns in
// which '*' matches any run of characters (slashes included) and '?' one
// character.
type Policy struct {
	hidden   *regexp.Regexp // nil: nothing matches
	readOnly *regexp.Regexp
}

// NewPolicy compiles the hidden and read-only patterns.
func NewPolicy(hidden, readOnly []string) (Policy, error) {
	h, err := compileGlobs(hidden)
	if err != nil {
		return Policy{}, fmt.Errorf("hidden attributes: %w", err)
	}
	r, err := compileGlobs(readOnly)
	if err != nil {
		return Policy{}, fmt.Errorf("read-only attributes: %w", err)
	}
	return Policy{hidden: h, readOnly: r}, nil
}

// compileGlobs turns patterns into one anchored regular expression, so that
// a key is checked against all of them in a single match.
func compileGlobs(patterns []string) (*regexp.Regexp, error) {
	var alternatives []string
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		var b strings.Builder
		for _, r := range p {
			switch r {
			case '*':
				b.WriteString(".*")
			case '?':
				b.WriteString(".")
			default:
				b.WriteString(regexp.QuoteMeta(string(r)))
			}
		}
		alternatives = append(alternatives, b.String())
	}
	if alternatives == nil {
		return nil, nil
	}
	return regexp.Compile(`^(?s:` + strings.Join(alternatives, "|") + `)$`)
}

// Hidden reports whether clients may neither see nor write key.
func (p Policy) Hidden(key string) bool {
	return p.hidden != nil && p.hidden.MatchString(key)
}

// Writable reports whether clients may set or remove key.
func (p Policy) Writable(key string) bool {
	return !p.Hidden(key) && (p.readOnly == nil || !p.readOnly.MatchString(key))
}

// Visible returns the attributes of a that clients may see. It returns a
// itself when nothing is hidden, so callers must not modify the result.
func (p Policy) Visible(a Attributes) Attributes {
	if p.hidden == nil {
		return a
	}
	v := make(Attributes, len(a))
	for k, vs := range a {
		if !p.Hidden(k) {
			v[k] = vs
		}
	}
	return v
}

// checkWritable returns a *ReadOnlyError naming every member of patch that
// writable refuses.
func checkWritable(patch Patch, writable func(string) bool) error {
	var keys []string
	for _, c := range patch {
		if !writable(c.Key) {
			keys = append(keys, c.Key)
		}
	}
	if keys != nil {
		return &ReadOnlyError{Keys: keys}
	}
	return nil
}
