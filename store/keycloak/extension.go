package keycloak

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/userattrs/userattrs"
)

// callerQuery names the caller of ctx to the extension, which reads and
// writes with that caller's rights.
func callerQuery(ctx context.Context) string {
	return "?caller=" + role(userattrs.CallerOf(ctx))
}

// versioned is a user's attributes as the extension reads them: those the
// caller may view, and the version of all of them.
type versioned struct {
	Version    string               `json:"version"`
	Attributes userattrs.Attributes `json:"attributes"`
	Caller     string               `json:"caller"`
}

// writeExtension writes the changes from current to next if the user's
// attributes still have version: the extension refuses what the caller may
// not edit, and rather than drop it, what the realm's user profile would
// not keep. When the version moved, it returns the attributes the caller
// may view as they are now. hint is the key of the store's memory of the
// user as this caller sees them.
func (s *Store) writeExtension(ctx context.Context, user, hint, version string, current, next userattrs.Attributes) (conflict *versioned, err error) {
	change := struct {
		Version string               `json:"version"`
		Set     userattrs.Attributes `json:"set"`
		Remove  []string             `json:"remove"`
	}{Version: version, Set: userattrs.Attributes{}, Remove: []string{}}
	for k, v := range next {
		if !slices.Equal(current[k], v) {
			change.Set[k] = v
		}
	}
	for k := range current {
		if _, ok := next[k]; !ok {
			change.Remove = append(change.Remove, k)
		}
	}
	status, answer, err := s.putUser(ctx, s.extension, user, callerQuery(ctx), change)
	if err != nil {
		s.hints.forget(hint)
		return nil, err
	}
	switch status {
	case http.StatusOK:
		var written versioned
		if json.Unmarshal(answer, &written) == nil {
			s.hints.put(hint, next, written.Version)
		}
		return nil, nil
	case http.StatusForbidden:
		// The realm's user profile does not let the caller edit these.
		var refused struct {
			ReadOnly []string `json:"readOnly"`
		}
		if err := json.Unmarshal(answer, &refused); err != nil || len(refused.ReadOnly) == 0 {
			return nil, fmt.Errorf("keycloak: the extension refused the change without naming the attributes")
		}
		return nil, &userattrs.ReadOnlyError{Keys: refused.ReadOnly}
	case http.StatusConflict:
		var now versioned
		if err := json.Unmarshal(answer, &now); err != nil || now.Version == "" {
			return nil, fmt.Errorf("keycloak: the extension answered a conflict without the current attributes")
		}
		return &now, nil
	case http.StatusNotFound:
		s.hints.forget(hint)
		if !bytes.Contains(answer, []byte("user-not-found")) {
			return nil, errNoExtension
		}
		return nil, userattrs.ErrUserNotFound
	case http.StatusUnprocessableEntity:
		var refused struct {
			Errors []struct{ Attribute, Message string }
		}
		json.Unmarshal(answer, &refused)
		var violations []userattrs.Violation
		for _, e := range refused.Errors {
			// Keycloak's messages are message keys, never values.
			violations = append(violations, userattrs.Violation{Key: e.Attribute, Index: -1,
				Detail: "Keycloak's user profile refuses this value (" + e.Message + "); nothing was changed"})
		}
		if violations == nil {
			return nil, errors.New("keycloak: the extension refused the change without saying why")
		}
		return nil, &userattrs.InvalidError{Violations: violations}
	}
	return nil, fmt.Errorf("keycloak: PUT /users/{id} through the extension: unexpected status %d", status)
}
