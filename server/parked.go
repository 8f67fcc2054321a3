package server

import (
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/userattrs/userattrs"
)

// Parked events: pages of them, and what a page may hold at most.
const (
	defaultParkedPage = 50
	maxParkedPage     = 200
)

var parkedParams = map[string]bool{"page[size]": true, "page[cursor]": true}

// parkedEvent is a parked event's attributes in the admin API.
type parkedEvent struct {
	User     string           `json:"user"`
	Time     time.Time        `json:"time"`
	ParkedAt time.Time        `json:"parkedAt"`
	Attempts int              `json:"attempts"`
	Reason   string           `json:"reason"`
	Record   userattrs.Record `json:"record"`
}

// getParked serves a page of the events parked after failing too long,
// oldest parked first, as JSON:API resources of type parked-events, with a
// link to the next page while there may be one.
func getParked(outbox userattrs.Outbox) http.Handler {
	return eventsOn(outbox, func(w http.ResponseWriter, r *http.Request) {
		query, ok := parseQuery(w, r, parkedParams, "page[size] and page[cursor]")
		if !ok {
			return
		}
		size, bad := pageSize(query, defaultParkedPage, maxParkedPage)
		if bad != nil {
			writeErrors(w, r, *bad)
			return
		}
		var after int64
		if s := query.Get("page[cursor]"); s != "" {
			// The cursor is the last position seen: any number of the
			// document's pattern is one, and past the last parked event
			// the page is empty.
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				writeErrors(w, r, parameterError("page[cursor]", "not a cursor this service gave out"))
				return
			}
			after = int64(min(n, math.MaxInt64))
		}
		parked, err := outbox.Parked(r.Context(), after, size)
		if err != nil {
			writeError(w, r, err)
			return
		}
		doc := newListDocument[parkedEvent](r, len(parked))
		for _, p := range parked {
			doc.add("parked-events", p.Record.ID, parkedEvent{User: p.Record.User, Time: p.Record.Time, ParkedAt: p.ParkedAt,
				Attempts: p.Attempts, Reason: p.Reason, Record: p.Record})
		}
		if len(parked) == size {
			query.Set("page[cursor]", strconv.FormatInt(parked[len(parked)-1].Seq, 10))
			doc.Links["next"] = r.URL.Path + "?" + query.Encode()
		}
		writeDocument(w, r, doc)
	})
}

// resendParked puts the path's parked event back in the outbox, ahead of
// its user's later events, and answers 202: it goes out as soon as the
// sinks take it, or is parked again if they keep refusing it.
func resendParked(outbox userattrs.Outbox) http.Handler {
	return eventsOn(outbox, func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("eventId")
		found := false
		var err error
		if len(id) <= 64 {
			found, err = outbox.Unpark(r.Context(), id)
		}
		switch {
		case err != nil:
			writeError(w, r, err)
		case !found:
			writeErrors(w, r, newError(http.StatusNotFound, codeEventNotFound, "no parked event has this id"))
		default:
			w.Header()["Cache-Control"] = noStore
			w.WriteHeader(http.StatusAccepted)
		}
	})
}

// eventsOn serves h while events are on, and 501 otherwise.
func eventsOn(outbox userattrs.Outbox, h http.HandlerFunc) http.Handler {
	if outbox == nil {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			writeErrors(w, r, newError(http.StatusNotImplemented, codeEventsOff,
				"this service delivers no change events: no sink is configured"))
		})
	}
	return h
}
