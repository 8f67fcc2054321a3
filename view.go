package userattrs

import "sync"

// View is one representation of a user's attributes as clients see them.
// What is derived from it (its entity tag, its encoded body) is computed
// once, when a request first needs it, and shared by every later request
// that reads the same view from the read cache: a merge that nobody reads
// back pays for neither, and a cached read pays for neither again.
type View struct {
	attrs Attributes // never modified once in a view
	size  int        // attrs.Size(), set on the views the read cache keeps

	etagOnce sync.Once
	etag     string

	bodyOnce sync.Once
	body     []byte
}

// Attributes returns the attributes; the caller must not modify them.
func (v *View) Attributes() Attributes { return v.attrs }

// ETag returns the strong entity tag of the view (see Attributes.ETag).
func (v *View) ETag() string {
	v.etagOnce.Do(func() { v.etag = v.attrs.ETag() })
	return v.etag
}

// Body returns the view encoded by encode, which must always encode the
// same attributes to the same bytes: the first caller's result is every
// caller's. The caller must not modify it.
func (v *View) Body(encode func(Attributes) []byte) []byte {
	v.bodyOnce.Do(func() { v.body = encode(v.attrs) })
	return v.body
}
