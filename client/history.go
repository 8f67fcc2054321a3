package client

import (
	"context"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Change is one recorded change of a user's attributes, as the history
// and change events show it; or, with Erased, the record of an erasure.
type Change struct {
	ID        string     `json:"id"`
	Time      time.Time  `json:"time"`
	User      string     `json:"user"`
	Actor     Actor      `json:"actor"`
	ClientID  string     `json:"clientId"`
	RequestID string     `json:"requestId"`
	Set       Attributes `json:"set"`
	Removed   []string   `json:"removed"`
	Erased    bool       `json:"erased,omitempty"`
}

// Actor is who made a change: Type "user" or "service-account".
type Actor struct {
	Type string `json:"type"`
	ID   string `json:"id"`
}

// HistoryOptions select the changes History lists; the zero value lists
// them all.
type HistoryOptions struct {
	Key          string    // only changes that set or removed it
	Since, Until time.Time // only changes at or after Since, before Until
	PageSize     int       // changes per request (default 200, the most)
}

// History lists the changes of user, newest first, a page at a time as
// the loop goes on (admin API). An error ends the listing.
func (c *Client) History(ctx context.Context, user string, opts HistoryOptions) iter.Seq2[Change, error] {
	return func(yield func(Change, error) bool) {
		if user == Me {
			yield(Change{}, errNoUser)
			return
		}
		q := url.Values{"page[size]": {strconv.Itoa(200)}}
		if opts.PageSize > 0 {
			q.Set("page[size]", strconv.Itoa(opts.PageSize))
		}
		if opts.Key != "" {
			q.Set("filter[key]", opts.Key)
		}
		for name, t := range map[string]time.Time{"filter[since]": opts.Since, "filter[until]": opts.Until} {
			if !t.IsZero() {
				q.Set(name, t.UTC().Format(time.RFC3339Nano))
			}
		}
		for {
			res, err := c.do(ctx, request{method: http.MethodGet, path: adminPath(user, "attributes/history"), query: q})
			var page struct {
				Data []struct {
					Attributes Change `json:"attributes"`
				} `json:"data"`
				Links struct {
					Next string `json:"next"`
				} `json:"links"`
			}
			if err == nil {
				err = decode(res, &page)
			}
			if err != nil {
				yield(Change{}, err)
				return
			}
			for _, d := range page.Data {
				if !yield(d.Attributes, nil) {
					return
				}
			}
			// The next page is this one's query with the cursor the
			// service gave.
			next, err := url.Parse(page.Links.Next)
			if page.Links.Next == "" || err != nil || next.Query().Get("page[cursor]") == "" {
				return
			}
			q.Set("page[cursor]", next.Query().Get("page[cursor]"))
		}
	}
}

// Export is everything the service keeps of a user.
type Export struct {
	User       string                       `json:"user"`
	ExportedAt time.Time                    `json:"exportedAt"`
	Attributes map[string]ExportedAttribute `json:"attributes"`
	History    []Change                     `json:"history"`       // newest first
	Pending    []Change                     `json:"pendingEvents"` // change events not yet delivered
	Erasures   []Change                     `json:"erasures"`      // records of past erasures
}

// ExportedAttribute is an attribute of an export; Hidden: clients may not
// see it.
type ExportedAttribute struct {
	Values []string `json:"values"`
	Hidden bool     `json:"hidden"`
}

// Export returns everything the service keeps of user (admin API).
func (c *Client) Export(ctx context.Context, user string) (*Export, error) {
	if user == Me {
		return nil, errNoUser
	}
	res, err := c.do(ctx, request{method: http.MethodGet, path: adminPath(user, "export")})
	if err != nil {
		return nil, err
	}
	var doc struct {
		Data struct {
			Attributes Export `json:"attributes"`
		} `json:"data"`
	}
	if err := decode(res, &doc); err != nil {
		return nil, err
	}
	return &doc.Data.Attributes, nil
}

// Erase erases everything the service keeps of user (admin API); nil
// means the erasure is durable.
func (c *Client) Erase(ctx context.Context, user string) error {
	if user == Me {
		return errNoUser
	}
	res, err := c.do(ctx, request{method: http.MethodDelete, path: adminPath(user, "attributes")})
	if err != nil {
		return err
	}
	res.Body.Close()
	return nil
}
