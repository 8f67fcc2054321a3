package keycloak

import (
	"bytes"
	"context"
	"fmt"
	"net/http"

	"github.com/userattrs/userattrs"
)

var _ userattrs.Eraser = (*Store)(nil)

// Erase removes the user's attributes, and leaves the user: deleting
// users is Keycloak's own business. Through the extension, every attribute
// the realm's user profile lets an administrator edit goes, in one
// transaction under the user's row lock; profile fields and what no
// administrator may edit (federation links) stay. Through the Admin API
// alone, it is a merge that removes every attribute an administrator
// sees, refused whole (read-only) where one of them is not theirs to edit.
//
// Keycloak keeps no record of its own of the erasure but its admin event
// (when the realm keeps admin events), which names the attributes
// removed; the service logs it.
func (s *Store) Erase(ctx context.Context, user string, landed func()) error {
	if s.closed.Load() {
		return userattrs.ErrClosed
	}
	path, err := userPath(user)
	if err != nil {
		return err
	}
	ctx = userattrs.WithCaller(ctx, userattrs.CallerAdmin)
	defer func() {
		for _, c := range []userattrs.Caller{userattrs.CallerUser, userattrs.CallerAdmin} {
			s.hints.forget(hintKey(userattrs.WithCaller(ctx, c), user))
		}
	}()
	if s.adminOnly {
		return s.Update(ctx, user, func(userattrs.Attributes) (userattrs.Attributes, error) {
			if landed != nil {
				landed()
			}
			return userattrs.Attributes{}, nil
		})
	}
	unlock, err := s.locks.lock(ctx, user)
	if err != nil {
		return unavailable("wait for the user's earlier merge", err)
	}
	defer unlock()
	if landed != nil {
		// This instance's merges of the user wait for the lock; other
		// instances keep no read cache of a shared store.
		landed()
	}
	status, body, err := s.call(ctx, http.MethodDelete, s.extension, path, nil)
	switch {
	case err != nil:
		return err
	case status == http.StatusOK:
		return nil
	case status == http.StatusNotFound && bytes.Contains(body, []byte("user-not-found")):
		return userattrs.ErrUserNotFound
	case status == http.StatusNotFound:
		return errNoExtension
	case status == http.StatusMethodNotAllowed:
		return errOldExtension
	}
	return fmt.Errorf("keycloak: DELETE /users/{id} through the extension: unexpected status %d", status)
}
