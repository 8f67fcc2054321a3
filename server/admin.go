package server

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
)

// pathUser is the user of the admin routes: the path's {id}. An id no
// token could carry as its subject names no user.
func pathUser(w http.ResponseWriter, r *http.Request) (string, bool) {
	id := r.PathValue("id")
	if problem := auth.SubjectProblem(id); problem != "" {
		writeErrors(w, r, newError(http.StatusNotFound, codeUserNotFound, "no user can have this id: "+problem))
		return "", false
	}
	return id, true
}

// History pages: the default size, and the largest a client may ask for.
const (
	defaultHistoryPage = 50
	maxHistoryPage     = 200
)

// historyParams are the query parameters of the history route.
var historyParams = map[string]bool{"page[size]": true, "page[cursor]": true,
	"filter[key]": true, "filter[since]": true, "filter[until]": true}

// getHistory serves a page of the changes of the path's user, newest
// first, as JSON:API resources of type attribute-changes, with a link to
// the next page while there is one.
func getHistory(svc Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := pathUser(w, r)
		if !ok {
			return
		}
		query, ok := parseQuery(w, r, historyParams, "page[size], page[cursor], filter[key], filter[since] and filter[until]")
		if !ok {
			return
		}
		q, bad := historyQuery(query)
		if bad != nil {
			writeErrors(w, r, *bad)
			return
		}
		records, next, err := svc.History(r.Context(), user, q)
		if err != nil {
			writeError(w, r, err)
			return
		}
		doc := newListDocument[userattrs.Record](r, len(records))
		for _, rec := range records {
			doc.add("attribute-changes", rec.ID, rec)
		}
		if next != "" {
			query.Set("page[cursor]", next)
			doc.Links["next"] = r.URL.Path + "?" + query.Encode()
		}
		writeDocument(w, r, doc)
	})
}

// listDocument is a JSON:API document of a list of resources of one type.
type listDocument[T any] struct {
	Data  []resource[T]     `json:"data"`
	Links map[string]string `json:"links"`
}

type resource[T any] struct {
	Type       string `json:"type"`
	ID         string `json:"id"`
	Attributes T      `json:"attributes"`
}

// newListDocument returns an empty list linked to r, with room for n.
func newListDocument[T any](r *http.Request, n int) *listDocument[T] {
	return &listDocument[T]{Data: make([]resource[T], 0, n), Links: map[string]string{"self": r.URL.RequestURI()}}
}

func (d *listDocument[T]) add(typ, id string, attributes T) {
	d.Data = append(d.Data, resource[T]{Type: typ, ID: id, Attributes: attributes})
}

// writeDocument answers 200 with doc, a JSON:API document no cache keeps.
func writeDocument(w http.ResponseWriter, r *http.Request, doc any) {
	body, err := json.Marshal(doc)
	if err != nil {
		writeError(w, r, err)
		return
	}
	h := w.Header()
	h["Cache-Control"] = noStore
	h["Content-Type"] = []string{"application/vnd.api+json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(body)
	}
}

// parseQuery reads a query string, which url.Values would take with a
// malformed escape dropped without a word: "filter[key]=k%" would become
// no filter at all. It refuses a parameter the route does not take
// (allowed names them), or one given twice or empty.
func parseQuery(w http.ResponseWriter, r *http.Request, allowed map[string]bool, takes string) (url.Values, bool) {
	query, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		writeErrors(w, r, newError(http.StatusBadRequest, codeInvalidParameter,
			"the query string has a malformed percent-escape; escape % as %25"))
		return nil, false
	}
	for name, values := range query {
		detail := ""
		switch {
		case !allowed[name]:
			detail = "unknown query parameter; this route takes " + takes
		case len(values) != 1 || values[0] == "":
			detail = "give this parameter once, with a value"
		default:
			continue
		}
		writeErrors(w, r, parameterError(name, detail))
		return nil, false
	}
	return query, true
}

func parameterError(name, detail string) apiError {
	e := newError(http.StatusBadRequest, codeInvalidParameter, detail)
	e.Source = &source{Parameter: name}
	return e
}

// pageSize reads page[size]: def when absent, 1 to most.
func pageSize(v url.Values, def, most int) (int, *apiError) {
	s := v.Get("page[size]")
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > most {
		e := parameterError("page[size]", "a whole number from 1 to "+strconv.Itoa(most))
		return 0, &e
	}
	return n, nil
}

// cursorPattern is the shape of the history's cursors.
var cursorPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{22}$`)

// historyQuery reads the history route's parameters, or the error that
// names the first bad one.
func historyQuery(v url.Values) (userattrs.HistoryQuery, *apiError) {
	q := userattrs.HistoryQuery{}
	bad := func(name, detail string) (userattrs.HistoryQuery, *apiError) {
		e := parameterError(name, detail)
		return q, &e
	}
	var e *apiError
	if q.Limit, e = pageSize(v, defaultHistoryPage, maxHistoryPage); e != nil {
		return q, e
	}
	if s := v.Get("page[cursor]"); s != "" {
		// As the document states it: 22 characters of base64url. The
		// service opens it, or refuses it, against the user's history.
		if !cursorPattern.MatchString(s) {
			return bad("page[cursor]", "not a cursor this service gave out")
		}
		q.Cursor = s
	}
	if s := v.Get("filter[key]"); s != "" {
		// A filter, not a name to keep: a name no attribute can have
		// selects nothing. Bounded in characters, as the document states.
		if !utf8.ValidString(s) || utf8.RuneCountInString(s) > 255 {
			return bad("filter[key]", "at most 255 characters of UTF-8")
		}
		q.Key = s
	}
	for _, p := range []struct {
		name string
		t    *time.Time
	}{{"filter[since]", &q.Since}, {"filter[until]", &q.Until}} {
		if s := v.Get(p.name); s != "" {
			t, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return bad(p.name, "a time in RFC 3339, such as 2026-01-02T15:04:05Z")
			}
			*p.t = t
		}
	}
	return q, nil
}
