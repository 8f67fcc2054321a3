package userattrs

import (
	"fmt"
	"regexp"
	"strings"
)

// Policy decides which attributes clients may see and write. Hidden
// attributes are never returned and cannot be written; read-only ones are
// returned but cannot be written; reserved ones are names a client's own
// decoder gives a meaning of its own, which no merge may set, and which no
// read returns. Operators name each with glob patterns in which '*' matches
// any run of characters (slashes included) and '?' one character.
//
// On top of the lists, the rules of an attribute policy file
// (AttributeRules) say per attribute which clients may read and write it
// through the self-service routes, and what its values may be on every
// route.
type Policy struct {
	hidden    globSet
	readOnly  globSet
	reserved  globSet
	invisible globSet // hidden or reserved: what no read returns
	rules     *AttributeRules
}

// PolicyConfig lists the glob patterns of a Policy, and its rules.
type PolicyConfig struct {
	Hidden   []string
	ReadOnly []string
	Reserved []string
	// Rules are an attribute policy file's; nil: none.
	Rules *AttributeRules
}

// DefaultReserved are the names reserved unless an operator says otherwise:
// the PACE iOS SDK decodes every GET response as a JSON:API document (Japx),
// which fails on a member "data" that is not a resource object and drops a
// member "included" without a word.
var DefaultReserved = []string{"data", "included"}

// NewPolicy compiles the patterns of cfg.
func NewPolicy(cfg PolicyConfig) (Policy, error) {
	var p Policy
	for _, set := range []struct {
		name     string
		patterns []string
		into     *globSet
	}{
		{"hidden attributes", cfg.Hidden, &p.hidden},
		{"read-only attributes", cfg.ReadOnly, &p.readOnly},
		{"reserved attributes", cfg.Reserved, &p.reserved},
		{"hidden or reserved attributes", append(append([]string(nil), cfg.Hidden...), cfg.Reserved...), &p.invisible},
	} {
		g, err := compileGlobs(set.patterns)
		if err != nil {
			return Policy{}, fmt.Errorf("%s: %w", set.name, err)
		}
		*set.into = g
	}
	p.rules = cfg.Rules
	return p, nil
}

// RulesVersion is the version of the attribute policy file in force; ""
// without one.
func (p Policy) RulesVersion() string {
	if p.rules == nil {
		return ""
	}
	return p.rules.Version
}

// readableBy returns the attributes of view (what Visible returned) that
// the caller may read: for a user's client, only those the rules let it
// read; view itself when that is all of them.
func (p Policy) readableBy(view Attributes, caller Caller, client string) Attributes {
	if caller != CallerUser || p.rules == nil || !p.rules.readRules {
		return view
	}
	var out Attributes
	for k := range view {
		if !p.rules.readable(k, client) {
			if out == nil {
				out = view.Clone()
			}
			delete(out, k)
		}
	}
	if out == nil {
		return view
	}
	return out
}

// writer returns what the caller may write: through the admin API every
// attribute that is not hidden; through the self-service routes what is
// neither hidden nor read-only, and what the rules let its client write.
func (p Policy) writer(caller Caller, client string) func(string) bool {
	if caller != CallerUser {
		return func(key string) bool { return !p.Hidden(key) }
	}
	return func(key string) bool { return p.Writable(key) && p.rules.writable(key, client) }
}

// globSet matches names against glob patterns: the patterns without
// wildcards by a map look-up, the others in a single regular expression.
// The zero value matches nothing.
type globSet struct {
	literal map[string]struct{}
	re      *regexp.Regexp
}

func (g globSet) match(key string) bool {
	if _, ok := g.literal[key]; ok {
		return true
	}
	return g.re != nil && g.re.MatchString(key)
}

func (g globSet) empty() bool { return len(g.literal) == 0 && g.re == nil }

// compileGlobs turns patterns into a globSet, whose wildcard patterns form
// one anchored regular expression, so that a key is checked against all of
// them in a single match.
func compileGlobs(patterns []string) (globSet, error) {
	var g globSet
	var alternatives []string
	for _, p := range patterns {
		p = strings.TrimSpace(p)
		if p == "" {
			continue
		}
		if !strings.ContainsAny(p, "*?") {
			if g.literal == nil {
				g.literal = map[string]struct{}{}
			}
			g.literal[p] = struct{}{}
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
	if alternatives != nil {
		re, err := regexp.Compile(`^(?s:` + strings.Join(alternatives, "|") + `)$`)
		if err != nil {
			return globSet{}, err
		}
		g.re = re
	}
	return g, nil
}

// Hidden reports whether clients may neither see nor write key.
func (p Policy) Hidden(key string) bool { return p.hidden.match(key) }

// Reserved reports whether no merge may set key.
func (p Policy) Reserved(key string) bool { return p.reserved.match(key) }

// Writable reports whether clients may set or remove key. A reserved key
// is writable in this sense: a merge may remove it, and Service refuses
// any value for it.
func (p Policy) Writable(key string) bool {
	return !p.Hidden(key) && !p.readOnly.match(key)
}

// Visible returns the attributes of a that reads return: neither hidden nor
// reserved ones. It returns a itself when none of them is either, so
// callers must not modify the result.
func (p Policy) Visible(a Attributes) Attributes { return without(a, p.invisible) }

// without returns a without the attributes g matches: a itself when it
// matches none, which is what almost every read finds.
func without(a Attributes, g globSet) Attributes {
	if g.empty() {
		return a
	}
	matched := 0
	for k := range a {
		if g.match(k) {
			matched++
		}
	}
	if matched == 0 {
		return a
	}
	v := make(Attributes, len(a)-matched)
	for k, vs := range a {
		if !g.match(k) {
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
