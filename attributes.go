// Package userattrs holds the domain of the user attributes service: the
// attributes of a user, the merge a PUT performs, the rules a merge must obey,
// and the Store interface every backend implements.
//
// The HTTP surface (package server), token verification (package auth) and
// the stores (packages under store/) depend on this package; it depends on
// none of them.
package userattrs

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"slices"
	"sort"
)

// Attributes are the key/value attributes of one user. Every attribute is a
// list of strings, as in Keycloak: one value is shown to clients as a string,
// several as an array. An attribute never has zero values; a merge that
// would leave it empty removes it instead.
type Attributes map[string][]string

// Clone returns a deep copy, so that an updater can change the copy without
// touching what a store or a cache still holds.
func (a Attributes) Clone() Attributes {
	c := make(Attributes, len(a))
	for k, v := range a {
		c[k] = slices.Clone(v)
	}
	return c
}

// Equal reports whether a and b hold the same attributes with the same
// values in the same order.
func (a Attributes) Equal(b Attributes) bool {
	if len(a) != len(b) {
		return false
	}
	for k, va := range a {
		vb, ok := b[k]
		if !ok || !slices.Equal(va, vb) {
			return false
		}
	}
	return true
}

// Size is the bytes of names and values of all the attributes, which
// Limits.MaxUserBytes bounds.
func (a Attributes) Size() int {
	n := 0
	for k, vs := range a {
		n += SizeOf(k, vs)
	}
	return n
}

// SizeOf is what one attribute adds to Attributes.Size, for those who keep
// a size up to date as attributes change rather than count it again.
func SizeOf(key string, values []string) int {
	n := len(key)
	for _, v := range values {
		n += len(v)
	}
	return n
}

// Keys returns the attribute names in sorted order.
func (a Attributes) Keys() []string {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// ETag returns the strong entity tag of a representation of these
// attributes, quoted as HTTP wants it.
//
// The tag is a hash of the content rather than a stored version number so
// that every store, including Keycloak which keeps no version, yields the
// same tag for the same attributes, and every instance of the service
// computes it alike without coordination.
func (a Attributes) ETag() string {
	h := sha256.New()
	var n [binary.MaxVarintLen64]byte
	// Length-prefix every field so that no two different attribute sets
	// serialise to the same bytes.
	write := func(s string) {
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(s)))])
		h.Write([]byte(s))
	}
	for _, k := range a.Keys() {
		write(k)
		vs := a[k]
		h.Write(n[:binary.PutUvarint(n[:], uint64(len(vs)))])
		for _, v := range vs {
			write(v)
		}
	}
	var sum [sha256.Size]byte
	// 128 bits are plenty to make an accidental match of two different
	// representations of one user's attributes impossible in practice.
	digest := h.Sum(sum[:0])[:16]
	return `"` + base64.RawURLEncoding.EncodeToString(digest) + `"`
}
