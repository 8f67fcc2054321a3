package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// The types of the change events.
const (
	ChangedType = "io.userattrs.attributes.changed.v1"
	ErasedType  = "io.userattrs.user.erased.v1"
)

// Event is a change event as a webhook receiver gets it: a CloudEvent
// whose data is the change, or for ErasedType the erasure's record, after
// which the receiver deletes what it holds of the user.
type Event struct {
	ID      string    `json:"id"`
	Type    string    `json:"type"`
	Source  string    `json:"source"`
	Subject string    `json:"subject"` // the user
	Time    time.Time `json:"time"`
	Change  Change    `json:"data"`
}

// ErrBadSignature is what VerifyWebhook answers for a delivery that no
// secret signed, or that is too old or too far in the future (5 minutes):
// answer it 4xx and do not act on it.
var ErrBadSignature = errors.New("client: the webhook's signature does not check out")

// VerifyWebhook checks a webhook delivery's Standard Webhooks signature
// (headers webhook-id, webhook-timestamp, webhook-signature) against
// secrets, the whsec_ secrets the service signs with (any one of them
// will do, which is how a secret is rotated), and returns the event.
func VerifyWebhook(secrets []string, header http.Header, body []byte) (*Event, error) {
	verified := false
	for _, secret := range secrets {
		wh, err := standardwebhooks.NewWebhook(strings.TrimSpace(secret))
		if err != nil {
			return nil, fmt.Errorf("client: a webhook secret is not a whsec_ secret: %w", err)
		}
		if wh.Verify(body, header) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, ErrBadSignature
	}
	var e Event
	if err := json.Unmarshal(body, &e); err != nil {
		return nil, fmt.Errorf("client: the webhook's body is not a change event: %w", err)
	}
	if e.Type == ErasedType {
		e.Change.Erased = true
	}
	return &e, nil
}
