package server

import (
	"context"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/jsontext"
	"github.com/userattrs/userattrs/internal/tracing"
)

// DefaultVersions are the published versions of the user API that have the
// attributes routes: 2024-2 is the one the published Android and iOS SDKs
// call, 2024-3 and 2025-1 the ones the documentation pages show. Every
// version serves GET and PUT alike.
var DefaultVersions = []string{"2024-2", "2024-3", "2025-1"}

// etagHeader is the ETag header's name as written on the wire.
const etagHeader = "ETag"

// Shared header values; see getAttributes.
var (
	noStore         = []string{"no-store"}
	applicationJSON = []string{"application/json"}
)

// knownVersion answers 404 for any version of the API but the served ones.
func knownVersion(versions map[string]bool, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !versions[r.PathValue("version")] {
			writeNotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// userOf finds the user a request is about, or answers the request itself
// and reports false.
type userOf func(w http.ResponseWriter, r *http.Request) (string, bool)

// tokenUser is the user of the self-service routes: the token's.
func tokenUser(_ http.ResponseWriter, r *http.Request) (string, bool) {
	return identity(r.Context()).Subject, true
}

// withOrigin returns the request's context carrying who asks, for the
// record of the change it makes.
func withOrigin(r *http.Request) context.Context {
	id := identity(r.Context())
	return userattrs.WithOrigin(r.Context(), userattrs.Origin{Actor: id.Actor(), ServiceAccount: id.ServiceAccount,
		ClientID: id.ClientID, RequestID: requestID(r.Context()), TraceParent: tracing.TraceParent(r.Context())})
}

// getter is Service.Get, or AdminGet.
type getter func(ctx context.Context, user string) (*userattrs.View, error)

// getAttributes serves the attributes of the user as one JSON object. It
// ignores Accept and Content-Type: clients differ in what they send and
// all of them expect this object.
func getAttributes(get getter, user userOf) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := user(w, r)
		if !ok {
			return
		}
		// The origin names the client, whose view the policy's rules
		// may narrow.
		view, err := get(withOrigin(r), id)
		if err != nil {
			writeError(w, r, err)
			return
		}
		h := w.Header()
		// Header values are set as slices rather than with Set, which
		// allocates one per header: the fixed ones are shared, the others
		// share one array. net/http never modifies them.
		etag := view.ETag()
		values := [2]string{etag}
		h["Cache-Control"] = noStore
		// Spelled as RFC 9110 spells it, not in Go's canonical "Etag":
		// some generated clients look headers up case-sensitively.
		h[etagHeader] = values[0:1:1]
		if noneMatch(r.Header.Values("If-None-Match"), etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		// The view keeps its body: a user read again from the read
		// cache costs no encoding, however many attributes they hold.
		body := view.Body(encodeAttributes)
		values[1] = strconv.Itoa(len(body))
		h["Content-Type"] = applicationJSON
		h["Content-Length"] = values[1:2:2]
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	})
}

// encodeAttributes renders attributes in the contract's shape: one value as
// a string, several as an array of strings, members in key order. It
// writes the object itself, which is many times faster than encoding/json
// over a map of interfaces.
func encodeAttributes(attrs userattrs.Attributes) []byte {
	keys := attrs.Keys()
	size := 2
	for _, k := range keys {
		size += len(k) + 4
		for _, v := range attrs[k] {
			size += len(v) + 3
		}
	}
	b := make([]byte, 0, size)
	b = append(b, '{')
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = jsontext.AppendString(b, k)
		b = append(b, ':')
		vs := attrs[k]
		if len(vs) == 1 {
			b = jsontext.AppendString(b, vs[0])
			continue
		}
		b = append(b, '[')
		for j, v := range vs {
			if j > 0 {
				b = append(b, ',')
			}
			b = jsontext.AppendString(b, v)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// acceptedContentType reports whether a PUT may carry a body of this type.
func acceptedContentType(header string) bool {
	if header == "" {
		return true
	}
	mediaType, _, err := mime.ParseMediaType(header)
	return err == nil && (mediaType == "application/json" || mediaType == "application/vnd.api+json")
}

// identityEncoded reports whether Content-Encoding fields name no encoding
// but "identity".
func identityEncoded(values []string) bool {
	for _, v := range values {
		for _, coding := range strings.Split(v, ",") {
			if c := strings.TrimSpace(coding); c != "" && !strings.EqualFold(c, "identity") {
				return false
			}
		}
	}
	return true
}

// isTimeout reports a read that ended at a deadline.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readBody reads a body of length bytes (-1: unknown) into a buffer of
// that size, rather than one io.ReadAll grows by doubling: a 36 KB body
// cost 85 KB of allocations that way. The server has checked length against
// the limit, and net/http never reads past it.
func readBody(body io.Reader, length int64) ([]byte, error) {
	if length < 0 {
		return io.ReadAll(body)
	}
	buf := make([]byte, length)
	_, err := io.ReadFull(body, buf)
	return buf, err
}

// largeBodies bounds how many requests with a large body are handled at
// once, from decoding to the answer: half the processors. What such a
// request costs grows with what its body holds (thousands of members, most
// of them refused, and an answer listing a hundred errors); a few clients
// sending them as fast as they can would otherwise take every processor
// from everyone else's requests. Small bodies, almost every PUT, never
// wait.
type largeBodies struct {
	slots chan struct{}
}

// largeBody is the size from which a body takes a slot.
const largeBody = 8 << 10

func newLargeBodies() *largeBodies {
	return &largeBodies{slots: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)/2))}
}

// take waits for a slot, and reports false if ctx ends first.
func (l *largeBodies) take(ctx context.Context) bool {
	select {
	case l.slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

// release gives back a slot take took.
func (l *largeBodies) release() { <-l.slots }

// merger is Service.Merge, or AdminMerge.
type merger func(ctx context.Context, user string, patch userattrs.Patch, cond userattrs.Precondition) error

// putAttributes merges the body into the attributes of the user and answers
// 204 once the change, and its record, are durable. A body that breaks any
// rule changes nothing.
func putAttributes(merge merger, maxBodyBytes int64, user userOf, large *largeBodies) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, ok := user(w, r)
		if !ok {
			return
		}
		if !acceptedContentType(r.Header.Get("Content-Type")) {
			writeErrors(w, r, newError(http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
				"send the attributes as application/json or application/vnd.api+json"))
			return
		}
		if !identityEncoded(r.Header.Values("Content-Encoding")) {
			// Decoding would let a small body expand past every limit;
			// a 64 KiB body needs no compression.
			w.Header()["Accept-Encoding"] = []string{"identity"}
			writeErrors(w, r, newError(http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
				"send the body without a Content-Encoding: no encoding is decoded"))
			return
		}
		tooLarge := newError(http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			"the body may be at most "+strconv.FormatInt(maxBodyBytes, 10)+" bytes")
		if r.ContentLength > maxBodyBytes {
			writeErrors(w, r, tooLarge)
			return
		}
		body, err := readBody(http.MaxBytesReader(w, r.Body, maxBodyBytes), r.ContentLength)
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeErrors(w, r, tooLarge)
			return
		case isTimeout(err):
			// The connection's read deadline passed: a client too slow to
			// send 64 KiB within the read timeout, or one holding the
			// connection open on purpose. Nothing more is read from it.
			w.Header()["Connection"] = []string{"close"}
			writeErrors(w, r, newError(http.StatusRequestTimeout, codeRequestTimeout,
				"the body did not arrive within the read timeout"))
			return
		case err != nil:
			writeErrors(w, r, newError(http.StatusBadRequest, codeInvalidJSON, "the body could not be read"))
			return
		}
		// A large body takes its slot once read: a client that sends one
		// slowly holds no slot while it does.
		if len(body) >= largeBody {
			if !large.take(r.Context()) {
				return // the client went away while the body waited
			}
			defer large.release()
		}
		patch, decodeErr := decodePatch(body)
		if decodeErr != nil {
			writeErrors(w, r, newError(http.StatusBadRequest, decodeErr.code, decodeErr.detail))
			return
		}
		cond := ifMatch(r.Header.Values("If-Match"))
		if err := merge(withOrigin(r), id, patch, cond); err != nil {
			writeError(w, r, err)
			return
		}
		w.Header()["Cache-Control"] = noStore
		w.WriteHeader(http.StatusNoContent)
	})
}
