package keycloak

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/userattrs/userattrs"
)

// lastSeen is what a merge starts from: the user's attributes (without
// profile fields), their version through the extension, and the whole
// representation through the Admin API. hinted says they come from this
// store's memory of an earlier merge rather than a read just made.
type lastSeen struct {
	attrs   userattrs.Attributes
	version string
	rep     map[string]json.RawMessage
	hinted  bool
}

// hints remember the attributes and version of users this store wrote
// last, so that the next merge of the user can write at once. They are
// only ever a guess: the extension's version check decides. A user's
// attributes as a user sees them and as an administrator does differ:
// each caller has hints of its own (hintKey).
type hints struct {
	mu    sync.Mutex
	users map[string]lastSeen
}

// maxHints bounds the memory hints take.
const maxHints = 10000

// hintKey is the key of the hints of user as the caller of ctx sees them.
func hintKey(ctx context.Context, user string) string {
	return role(userattrs.CallerOf(ctx)) + ":" + user
}

func (h *hints) get(user string) (lastSeen, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	seen, ok := h.users[user]
	return seen, ok
}

func (h *hints) put(user string, attrs userattrs.Attributes, version string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.users == nil {
		h.users = map[string]lastSeen{}
	}
	if _, ok := h.users[user]; !ok && len(h.users) >= maxHints {
		for k := range h.users {
			delete(h.users, k)
			break
		}
	}
	h.users[user] = lastSeen{attrs: attrs, version: version, hinted: true}
}

func (h *hints) forget(user string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.users, user)
}
