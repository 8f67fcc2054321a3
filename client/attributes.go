package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Attributes are a user's attributes, each with its values: one for a
// single-valued attribute.
type Attributes map[string][]string

// UnmarshalJSON reads the API's form: a string for one value, an array of
// strings for several.
func (a *Attributes) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*a = make(Attributes, len(raw))
	for k, v := range raw {
		var one string
		if json.Unmarshal(v, &one) == nil {
			(*a)[k] = []string{one}
			continue
		}
		var several []string
		if err := json.Unmarshal(v, &several); err != nil {
			return fmt.Errorf("attribute %q: %w", k, err)
		}
		(*a)[k] = several
	}
	return nil
}

// Patch is a merge: each attribute it names is set to its values, or
// removed when it has none (nil). Attributes it does not name stay.
type Patch map[string][]string

// MarshalJSON writes the API's form: a string for one value, an array for
// several, null to remove.
func (p Patch) MarshalJSON() ([]byte, error) {
	body := make(map[string]any, len(p))
	for k, vs := range p {
		switch len(vs) {
		case 0:
			body[k] = nil
		case 1:
			body[k] = vs[0]
		default:
			body[k] = vs
		}
	}
	return json.Marshal(body)
}

// Get returns the attributes of user (Me: the token's own user) and their
// entity tag, for Merge's ifMatch.
func (c *Client) Get(ctx context.Context, user string) (Attributes, string, error) {
	res, err := c.do(ctx, request{method: http.MethodGet, path: c.attributesPath(user)})
	if err != nil {
		return nil, "", err
	}
	var attrs Attributes
	if err := decode(res, &attrs); err != nil {
		return nil, "", err
	}
	return attrs, res.Header.Get("ETag"), nil
}

// Merge applies p to the attributes of user (Me: the token's own user).
// With an ifMatch entity tag from Get, it changes nothing unless the
// attributes are still as read: ErrPreconditionFailed otherwise. A nil
// return means the change is durable.
//
// A merge the service answered 503 may have landed all the same; sending
// it again sets the same values, so Merge does, as it does after 429.
func (c *Client) Merge(ctx context.Context, user string, p Patch, ifMatch string) error {
	body, err := json.Marshal(p)
	if err != nil {
		return err
	}
	req := request{method: http.MethodPut, path: c.attributesPath(user), body: body}
	if ifMatch != "" {
		req.header = http.Header{"If-Match": {ifMatch}}
	}
	res, err := c.do(ctx, req)
	if err != nil {
		return err
	}
	res.Body.Close()
	return nil
}

// maxUpdateAttempts bounds Update's loop: past it, the user's attributes
// change faster than the read-modify-write takes.
const maxUpdateAttempts = 20

// Update reads the attributes of user, asks change for a patch, and
// merges it only if nothing changed the attributes in between (If-Match);
// when something did, it waits a little, reads them again and asks again.
// A nil or empty patch ends it without a write. change may run several
// times and must not keep its argument.
func (c *Client) Update(ctx context.Context, user string, change func(current Attributes) (Patch, error)) error {
	var lost error
	for attempt := range maxUpdateAttempts {
		if attempt > 0 {
			// Writers that lost a round spread out, so that the next is
			// not the same race again.
			if err := sleep(ctx, c.wait(0, attempt-1)/4); err != nil {
				return err
			}
		}
		attrs, etag, err := c.Get(ctx, user)
		if err != nil {
			return err
		}
		p, err := change(attrs)
		if err != nil || len(p) == 0 {
			return err
		}
		if lost = c.Merge(ctx, user, p, etag); !errors.Is(lost, ErrPreconditionFailed) {
			return lost
		}
	}
	return fmt.Errorf("client: the attributes kept changing during %d read-modify-write attempts: %w", maxUpdateAttempts, lost)
}
