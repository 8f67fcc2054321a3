package userattrs

import (
	"fmt"
	"maps"
	"slices"
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
	// Array: the member's value is a JSON array, whose elements errors
	// point at one by one.
	Array bool
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

// Merged returns a with the patch applied, leaving a as it is. The values
// are shared with a and with the patch, not copied: no attribute's values
// are ever changed in place, only replaced, so a merge costs what it
// changes plus a copy of the map.
func (p Patch) Merged(a Attributes) Attributes {
	// Cloning copies the map's table as it is, which costs a fraction of
	// inserting every attribute into a new one.
	next := maps.Clone(a)
	if next == nil {
		next = make(Attributes, len(p))
	}
	p.ApplyTo(next)
	return next
}

// Changes reports whether applying the patch to a would change it, at the
// cost of the patch, not of a.
func (p Patch) Changes(a Attributes) bool {
	for _, c := range p {
		old, ok := a[c.Key]
		if c.Remove() && ok || !c.Remove() && !slices.Equal(old, c.Values) {
			return true
		}
	}
	return false
}

// Limits bound what one user may store. They protect the stores and every
// client that reads the attributes back.
type Limits struct {
	MaxAttributes int // per user, after a merge
	MaxKeyBytes   int
	MaxValueBytes int
	MaxValues     int // per multi-valued attribute
	// MaxUserBytes bounds all of one user's attributes together, in bytes
	// of keys and values: without it, a user within every other limit
	// could keep megabytes that every read and merge of theirs must carry.
	MaxUserBytes int
}

// DefaultLimits are the limits of the published contract.
var DefaultLimits = Limits{
	MaxAttributes: 256,
	MaxKeyBytes:   255,
	MaxValueBytes: 2048,
	MaxValues:     64,
	MaxUserBytes:  64 << 10,
}

// Validate checks every change of p against the limits and the type rules
// and returns an *InvalidError with one violation per offending member, or
// nil.
func (l Limits) Validate(p Patch) error { return l.validate(p, nil) }

// reservedDetail explains a reserved name without quoting a value.
const reservedDetail = "this attribute name is reserved and cannot be set (it may only be removed, with null): " +
	"apps decode the attributes as a JSON:API document, in which a member of this name has a meaning of its own, " +
	"so an attribute of this name would break or vanish from every read of this user; choose another name"

// MaxViolations bounds the violations an *InvalidError lists: the first
// ones of the body, as many as one response shows. Past them the body is
// refused all the same, and nothing more is checked or formatted, so that
// a body of thousands of bad members costs what one of a hundred does.
const MaxViolations = 100

// validate is Validate that also refuses a value for any key reserved
// reports, in the same pass, so that the violations stay in body order.
func (l Limits) validate(p Patch, reserved func(string) bool) error {
	var violations []Violation
	for _, c := range p {
		if len(violations) == MaxViolations {
			break
		}
		if detail := l.problem(c); detail != "" {
			index := -1
			if c.BadType != "" {
				index = c.BadIndex
			}
			violations = append(violations, Violation{Key: c.Key, Index: index, Detail: detail})
		} else if reserved != nil && !c.Remove() && reserved(c.Key) {
			violations = append(violations, Violation{Key: c.Key, Index: -1, Detail: reservedDetail, Reserved: true})
		}
	}
	if violations != nil {
		return &InvalidError{Violations: violations}
	}
	// What the patch alone adds may break the per-user bounds whatever the
	// user holds: say so before the store is asked, so that a body that
	// cannot succeed costs the single writer of a store nothing.
	var adds, bytes int
	for _, c := range p {
		if !c.Remove() {
			adds++
			bytes += c.size()
		}
	}
	if adds > l.MaxAttributes {
		return l.tooMany(p, nil, adds)
	}
	if l.MaxUserBytes > 0 && bytes > l.MaxUserBytes {
		return l.tooLarge(p, bytes)
	}
	return nil
}

// size is what c adds to its user's total when it sets a value.
func (c Change) size() int { return SizeOf(c.Key, c.Values) }

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

// checkTotals checks a merge's result against the per-user bounds: the
// number of attributes and their total size, which it returns (-1 when
// MaxUserBytes is off). It runs in the store's update, on what may be a
// single writer, so it only adds lengths and builds its error only when a
// bound is broken.
func (l Limits) checkTotals(p Patch, before, after Attributes) (int, error) {
	if len(after) > l.MaxAttributes {
		return 0, l.tooMany(p, before, len(after))
	}
	if l.MaxUserBytes <= 0 {
		return -1, nil
	}
	total := before.Size()
	for _, c := range p {
		if old, ok := before[c.Key]; ok {
			total -= SizeOf(c.Key, old)
		}
		if !c.Remove() {
			total += c.size()
		}
	}
	if total > l.MaxUserBytes {
		return 0, l.tooLarge(p, total)
	}
	return total, nil
}

// tooMany reports the members of p that add an attribute the user did not
// have: removing any of them makes the body acceptable.
func (l Limits) tooMany(p Patch, before Attributes, count int) error {
	return blame(p, fmt.Sprintf("a user may have at most %d attributes, this change would leave %d", l.MaxAttributes, count),
		func(c Change) bool { _, existed := before[c.Key]; return !existed })
}

// tooLarge reports the members of p that set a value when the user's
// attributes would exceed MaxUserBytes.
func (l Limits) tooLarge(p Patch, total int) error {
	return blame(p, fmt.Sprintf("a user's attributes may hold at most %d bytes of names and values together, this change would leave %d",
		l.MaxUserBytes, total), func(Change) bool { return true })
}

// blame is a per-user bound broken by p: one violation with detail for
// each member that sets a value and is one of those counted.
func blame(p Patch, detail string, counted func(Change) bool) error {
	var violations []Violation
	for _, c := range p {
		if len(violations) == MaxViolations {
			break
		}
		if !c.Remove() && counted(c) {
			violations = append(violations, Violation{Key: c.Key, Index: -1, Detail: detail})
		}
	}
	return &InvalidError{Violations: violations}
}
