package server

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strconv"
	"strings"

	"github.com/userattrs/userattrs"
)

// versions are the API versions that serve the attributes resource; both
// serve GET and PUT alike.
var versions = map[string]bool{"2024-3": true, "2025-1": true}

// knownVersion answers 404 for any version of the API but the known ones.
func knownVersion(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !versions[r.PathValue("version")] {
			writeNotFound(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// getAttributes serves the attributes of the token's user as one JSON
// object. It ignores Accept and Content-Type: clients differ in what they
// send and all of them expect this object.
func getAttributes(svc *userattrs.Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		attrs, etag, err := svc.Get(r.Context(), identity(r.Context()).Subject)
		if err != nil {
			writeError(w, r, err)
			return
		}
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("ETag", etag)
		if noneMatch := r.Header.Get("If-None-Match"); noneMatch != "" && etagListContains(noneMatch, etag) {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		body := encodeAttributes(attrs)
		h.Set("Content-Type", "application/json")
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			w.Write(body)
		}
	})
}

// etagListContains reports whether an If-None-Match list names etag, by the
// weak comparison RFC 9110 prescribes for it.
func etagListContains(list, etag string) bool {
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == "*" || t == etag {
			return true
		}
	}
	return false
}

// encodeAttributes renders attributes in the contract's shape: one value as
// a string, several as an array of strings.
func encodeAttributes(attrs userattrs.Attributes) []byte {
	out := make(map[string]any, len(attrs))
	for k, vs := range attrs {
		if len(vs) == 1 {
			out[k] = vs[0]
		} else {
			out[k] = vs
		}
	}
	body, _ := json.Marshal(out) // strings and slices of strings always encode
	return body
}

// acceptedContentType reports whether a PUT may carry a body of this type.
func acceptedContentType(header string) bool {
	if header == "" {
		return true
	}
	mediaType, _, err := mime.ParseMediaType(header)
	return err == nil && (mediaType == "application/json" || mediaType == "application/vnd.api+json")
}

// putAttributes merges the body into the attributes of the token's user and
// answers 204 once the change is durable. A body that breaks any rule
// changes nothing.
func putAttributes(svc *userattrs.Service, maxBodyBytes int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !acceptedContentType(r.Header.Get("Content-Type")) {
			writeErrors(w, r, newError(http.StatusUnsupportedMediaType, codeUnsupportedMediaType,
				"send the attributes as application/json or application/vnd.api+json"))
			return
		}
		tooLarge := newError(http.StatusRequestEntityTooLarge, codeBodyTooLarge,
			"the body may be at most "+strconv.FormatInt(maxBodyBytes, 10)+" bytes")
		if r.ContentLength > maxBodyBytes {
			writeErrors(w, r, tooLarge)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeErrors(w, r, tooLarge)
			return
		case err != nil:
			writeErrors(w, r, newError(http.StatusBadRequest, codeInvalidJSON, "the body could not be read"))
			return
		}
		patch, decodeErr := decodePatch(body)
		if decodeErr != nil {
			writeErrors(w, r, newError(http.StatusBadRequest, decodeErr.code, decodeErr.detail))
			return
		}
		cond := userattrs.IfMatch(r.Header.Values("If-Match"))
		if err := svc.Merge(r.Context(), identity(r.Context()).Subject, patch, cond); err != nil {
			writeError(w, r, err)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusNoContent)
	})
}
