package userattrs

import (
	"fmt"
	"unicode"
	"unicode/utf8"
)

// Change is one member of a PUT body: the attribute it names and what the
// body asks for it.
type Change struct {
	Key string
	// Values are what the attribute is set to, in order. Empty means remove:
	// both null and an empty array ask for that, because an attribute never
	// has zero values (Keycloak could not keep one either).
	Values []string
	// BadType is set when the member's value is of a JSON type the contract
	// rejects ("number", "boolean", "object", or an array element that is
	// not a string); the change is then never applied. BadIndex is the
	// offending element of an array, -1 for the member itself.
	BadType  string
	BadIndex int
}

// Remove reports whether the change removes its attribute.
func (c Change) Remove() bool { return len(c.Values) == 0 }

// Patch is a decoded PUT body: its members in body order, each key once.
type Patch []Change

// ApplyTo merges the patch into a: named attributes are set or removed,
// every other attribute is left as it is.
func (p Patch) ApplyTo(a Attributes) {
	for _, c := range p {
		if c.Remove() {
			delete(a, c.Key)
		} else {
			a[c.Key] = c.Values
		}
	}
}

// Limits bound what one user may store. They protect the stores and every
// client that reads the attributes back.
type Limits struct {
	MaxAttributes int // per user, after a merge
	MaxKeyBytes   int
	MaxValueBytes int
	MaxValues     int // per multi-valued attribute
}

// DefaultLimits are the limits of the published contract.
var DefaultLimits = Limits{
	MaxAttributes: 256,
	MaxKeyBytes:   255,
	MaxValueBytes: 2048,
	MaxValues:     64,
}

// Validate checks every change of p against the limits and the type rules
// and returns an *InvalidError with one violation per offending member, or
// nil.
func (l Limits) Validate(p Patch) error {
	var violations []Violation
	for _, c := range p {
		if detail := l.problem(c); detail != "" {
			index := -1
			if c.BadType != "" {
				index = c.BadIndex
			}
			violations = append(violations, Violation{Key: c.Key, Index: index, Detail: detail})
		}
	}
	if violations != nil {
		return &InvalidError{Violations: violations}
	}
	return nil
}

// problem returns what is wrong with c, or "" when nothing is. Details never
// quote a value: values may be personal data.
func (l Limits) problem(c Change) string {
	if detail := l.KeyProblem(c.Key); detail != "" {
		return detail
	}
	if c.BadType != "" {
		if c.BadIndex >= 0 {
			return fmt.Sprintf("an array element must be a string, not %s%s", c.BadType, asStringHint(c.BadType))
		}
		return fmt.Sprintf("the value must be a string, an array of strings or null, not %s%s", c.BadType, asStringHint(c.BadType))
	}
	if len(c.Values) > l.MaxValues {
		return fmt.Sprintf("an attribute may have at most %d values, this one has %d", l.MaxValues, len(c.Values))
	}
	for _, v := range c.Values {
		if len(v) > l.MaxValueBytes {
			return fmt.Sprintf("a value may be at most %d bytes long, one here is %d", l.MaxValueBytes, len(v))
		}
		if !utf8.ValidString(v) {
			return "a value must be valid UTF-8"
		}
	}
	return ""
}

// asStringHint tells an app developer what to send instead of a boolean or
// a number, which SDKs whose bodies are maps of any type let apps send: the
// contract never coerces, so the app must. The example is fixed rather than
// the value sent, which may be personal data.
func asStringHint(badType string) string {
	switch badType {
	case "a boolean":
		return `; send the value as a string, e.g. "true"`
	case "a number":
		return `; send the value as a string, e.g. "1"`
	}
	return ""
}

// KeyProblem returns what is wrong with an attribute name, or "".
func (l Limits) KeyProblem(key string) string {
	switch {
	case len(key) == 0:
		return "an attribute name must not be empty"
	case len(key) > l.MaxKeyBytes:
		return fmt.Sprintf("an attribute name may be at most %d bytes long, this one is %d", l.MaxKeyBytes, len(key))
	case !utf8.ValidString(key):
		return "an attribute name must be valid UTF-8"
	}
	for _, r := range key {
		if unicode.IsControl(r) {
			return "an attribute name must not contain control characters"
		}
	}
	return ""
}

// checkCount reports the members of p that add an attribute when a merge
// would leave the user with more attributes than allowed: removing any of
// them makes the body acceptable.
func (l Limits) checkCount(p Patch, before, after Attributes) error {
	if len(after) <= l.MaxAttributes {
		return nil
	}
	detail := fmt.Sprintf("a user may have at most %d attributes, this change would leave %d", l.MaxAttributes, len(after))
	var violations []Violation
	for _, c := range p {
		if _, existed := before[c.Key]; !existed && !c.Remove() {
			violations = append(violations, Violation{Key: c.Key, Index: -1, Detail: detail})
		}
	}
	return &InvalidError{Violations: violations}
}
