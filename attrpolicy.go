package userattrs

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

// AttributeRules are the rules of an attribute policy file (serve
// --attribute-policy): per attribute name, which clients may read and
// write it, and what its values may be. The first rule whose match
// matches an attribute decides for it; an attribute no rule matches is
// governed by the Policy's lists alone.
type AttributeRules struct {
	rules []attributeRule
	// readRules: some rule limits who reads, so reads must be filtered per
	// client; without, every client's view is the same.
	readRules bool
	// Version names the file's content: the first 12 hex digits of its
	// SHA-256.
	Version string
}

type attributeRule struct {
	n         int // 1-based, as messages name it
	match     string
	glob      globSet
	enum      []string
	pattern   *regexp.Regexp
	maxLength int      // bytes; 0: no bound of its own
	maxValues int      // 0: no bound of its own
	read      []string // client ids; nil: every client
	write     []string // client ids; nil: every client, empty: none
}

// ruleFile is the file's format; its names are the published ones
// (api/attribute-policy.schema.json).
type ruleFile struct {
	Attributes []json.RawMessage `json:"attributes"`
}

type ruleSpec struct {
	Match     *string   `json:"match"`
	Enum      []string  `json:"enum"`
	Pattern   *string   `json:"pattern"`
	MaxLength *int      `json:"max_length"`
	MaxValues *int      `json:"max_values"`
	Read      *[]string `json:"read"`
	Write     *[]string `json:"write"`
}

// ParseAttributeRules reads an attribute policy file in YAML (or JSON) and
// checks all of it against limits: unknown keys, globs, regular
// expressions, enum values past the limits. An error is one line naming
// the rule and the problem.
func ParseAttributeRules(data []byte, limits Limits) (*AttributeRules, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, fmt.Errorf("not YAML: %s", oneLine(err))
	}
	var file ruleFile
	if err := strictJSON(js, &file); err != nil {
		return nil, fmt.Errorf("the file must be a mapping with the one key \"attributes\", a list of rules: %s", oneLine(err))
	}
	sum := sha256.Sum256(data)
	r := &AttributeRules{Version: hex.EncodeToString(sum[:])[:12]}
	for i, raw := range file.Attributes {
		rule, err := parseRule(i+1, raw, limits)
		if err != nil {
			return nil, err
		}
		r.readRules = r.readRules || rule.read != nil
		r.rules = append(r.rules, rule)
	}
	return r, nil
}

func parseRule(n int, raw json.RawMessage, limits Limits) (attributeRule, error) {
	rule := attributeRule{n: n}
	fail := func(format string, args ...any) (attributeRule, error) {
		name := "rule " + strconv.Itoa(n)
		if rule.match != "" {
			name += fmt.Sprintf(" (match %q)", rule.match)
		}
		return attributeRule{}, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...))
	}
	// The rule's match names it in every message, even one about its
	// other keys.
	var named struct{ Match string }
	if json.Unmarshal(raw, &named) == nil {
		rule.match = named.Match
	}
	var spec ruleSpec
	if err := strictJSON(raw, &spec); err != nil {
		return fail("%s (a rule takes match, enum, pattern, max_length, max_values, read and write)", oneLine(err))
	}
	if spec.Match == nil || strings.TrimSpace(*spec.Match) == "" {
		return fail("match is required: a glob of attribute names")
	}
	rule.match = *spec.Match
	// What is not a wildcard must be what an attribute name may hold, or
	// the rule could match nothing.
	if literal := strings.NewReplacer("*", "", "?", "").Replace(rule.match); literal != "" {
		if problem := limits.KeyProblem(literal); problem != "" {
			return fail("match is not a glob of attribute names: %s", problem)
		}
	}
	glob, err := compileGlobs([]string{rule.match})
	if err != nil {
		return fail("match is not a glob: %s", oneLine(err))
	}
	rule.glob = glob
	if spec.MaxLength != nil {
		if *spec.MaxLength < 1 || *spec.MaxLength > limits.MaxValueBytes {
			return fail("max_length must be from 1 to %d (--max-value-bytes)", limits.MaxValueBytes)
		}
		rule.maxLength = *spec.MaxLength
	}
	if spec.MaxValues != nil {
		if *spec.MaxValues < 1 || *spec.MaxValues > limits.MaxValues {
			return fail("max_values must be from 1 to %d (--max-values)", limits.MaxValues)
		}
		rule.maxValues = *spec.MaxValues
	}
	if spec.Enum != nil {
		if len(spec.Enum) == 0 {
			return fail("enum must list at least one value")
		}
		for i, v := range spec.Enum {
			switch {
			case !utf8.ValidString(v):
				return fail("enum value %d is not valid UTF-8", i+1)
			case len(v) > limits.MaxValueBytes || rule.maxLength > 0 && len(v) > rule.maxLength:
				// max_length is within --max-value-bytes (checked above).
				return fail("enum value %d is %d bytes long, past the limit of %d", i+1, len(v), cmp.Or(rule.maxLength, limits.MaxValueBytes))
			}
		}
		rule.enum = spec.Enum
	}
	if spec.Pattern != nil {
		re, err := regexp.Compile(*spec.Pattern)
		if err != nil {
			return fail("pattern is not an RE2 regular expression: %s", oneLine(err))
		}
		rule.pattern = re
	}
	for _, list := range []struct {
		name string
		from *[]string
		into *[]string
	}{{"read", spec.Read, &rule.read}, {"write", spec.Write, &rule.write}} {
		if list.from == nil {
			continue
		}
		for _, id := range *list.from {
			if strings.TrimSpace(id) == "" {
				return fail("%s lists an empty client id", list.name)
			}
		}
		*list.into = append([]string{}, *list.from...)
	}
	return rule, nil
}

// strictJSON decodes js into v, refusing keys v does not have.
func strictJSON(js []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("more than one document")
	}
	return nil
}

func oneLine(err error) string { return strings.Join(strings.Fields(err.Error()), " ") }

// rule returns the rule that decides for key, or nil.
func (r *AttributeRules) rule(key string) *attributeRule {
	if r == nil {
		return nil
	}
	for i := range r.rules {
		if r.rules[i].glob.match(key) {
			return &r.rules[i]
		}
	}
	return nil
}

// readable reports whether client may read key.
func (r *AttributeRules) readable(key, client string) bool {
	rule := r.rule(key)
	return rule == nil || rule.read == nil || slices.Contains(rule.read, client)
}

// writable reports whether client may write key through the self-service
// routes.
func (r *AttributeRules) writable(key, client string) bool {
	rule := r.rule(key)
	return rule == nil || rule.write == nil || slices.Contains(rule.write, client)
}

// violations returns what of patch breaks the value rules; details name the
// rule, never a value.
func (r *AttributeRules) violations(patch Patch) []Violation {
	if r == nil || len(r.rules) == 0 {
		return nil
	}
	var bad []Violation
	for _, c := range patch {
		if c.Remove() {
			continue
		}
		rule := r.rule(c.Key)
		if rule == nil {
			continue
		}
		if rule.maxValues > 0 && len(c.Values) > rule.maxValues {
			bad = append(bad, Violation{Key: c.Key, Index: -1,
				Detail: fmt.Sprintf("at most %d values by %s; this one has %d", rule.maxValues, rule.name(), len(c.Values))})
			continue
		}
		for i, v := range c.Values {
			// The details are made only for a value that breaks the rule:
			// every merge of a matched attribute passes through here.
			detail := ""
			switch {
			case rule.maxLength > 0 && len(v) > rule.maxLength:
				detail = fmt.Sprintf("a value may be at most %d bytes long by %s, this one is %d", rule.maxLength, rule.name(), len(v))
			case rule.enum != nil && !slices.Contains(rule.enum, v):
				detail = fmt.Sprintf("the value must be one of %s by %s", quoteAll(rule.enum), rule.name())
			case rule.pattern != nil && !rule.pattern.MatchString(v):
				detail = fmt.Sprintf("the value must match the pattern %s by %s", rule.pattern, rule.name())
			}
			if detail != "" {
				index := -1
				if c.Array {
					index = i
				}
				bad = append(bad, Violation{Key: c.Key, Index: index, Detail: detail})
				break
			}
		}
	}
	return bad
}

// name is how a violation's detail names the rule.
func (r *attributeRule) name() string {
	return fmt.Sprintf("rule %d (match %q) of the attribute policy", r.n, r.match)
}

func quoteAll(values []string) string {
	q := make([]string, len(values))
	for i, v := range values {
		q[i] = strconv.Quote(v)
	}
	return strings.Join(q, ", ")
}
