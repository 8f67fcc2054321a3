package keycloak

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"

	"github.com/userattrs/userattrs"
)

// readAdminAPI returns the user's representation from the Admin API, and
// every attribute in it.
func (s *Store) readAdminAPI(ctx context.Context, path string) (userattrs.Attributes, map[string]json.RawMessage, error) {
	var rep map[string]json.RawMessage
	if err := s.getJSON(ctx, s.admin, path, &rep); err != nil {
		return nil, nil, err
	}
	var all userattrs.Attributes
	if raw, ok := rep["attributes"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &all); err != nil {
			return nil, nil, fmt.Errorf("keycloak: decode attributes: %w", err)
		}
	}
	return all, rep, nil
}

// writeAdminAPI writes the changes from current (what the caller sees) to
// next, if the realm's user profile lets the caller make them, with the
// whole representation (Keycloak has no PATCH: a PUT that carries
// attributes deletes the ones it omits, so the attributes the caller does
// not see go back as they were). It then reads the user again to confirm
// that Keycloak kept what was written. It asks for a retry when Keycloak
// reports a conflict, a few times.
func (s *Store) writeAdminAPI(ctx context.Context, user string, rep map[string]json.RawMessage, current, next userattrs.Attributes, attempt int) (retry bool, err error) {
	p, err := s.profile(ctx)
	if err != nil {
		return false, err
	}
	if err := p.check(current, next, userattrs.CallerOf(ctx)); err != nil {
		return false, err
	}
	var written userattrs.Attributes
	if raw, ok := rep["attributes"]; ok && string(raw) != "null" {
		json.Unmarshal(raw, &written)
	}
	if written == nil {
		written = userattrs.Attributes{}
	}
	for k := range current {
		delete(written, k)
	}
	maps.Copy(written, next)
	if rep["attributes"], err = json.Marshal(written); err != nil {
		return false, err
	}
	status, _, err := s.putUser(ctx, s.admin, user, "", rep)
	if err != nil {
		return false, err
	}
	switch {
	case status == http.StatusConflict && attempt < maxConflictRetries:
		return true, nil
	case status == http.StatusNotFound:
		return false, userattrs.ErrUserNotFound
	case status != http.StatusNoContent && status != http.StatusOK:
		return false, fmt.Errorf("keycloak: PUT /users/{id}: unexpected status %d", status)
	}
	return false, s.confirm(ctx, user, next)
}

// confirm checks that Keycloak kept the attributes just written: a realm
// whose user profile discards unmanaged attributes answers 204 and drops
// them, and the client must hear of it.
func (s *Store) confirm(ctx context.Context, user string, want userattrs.Attributes) error {
	got, _, _, err := s.read(ctx, user)
	if err != nil {
		return err
	}
	if !got.Equal(want) {
		return errors.New("keycloak: the realm did not keep the attributes written: its user profile must keep unmanaged attributes (unmanagedAttributePolicy ENABLED)")
	}
	return nil
}

// keepable rejects values Keycloak cannot keep, before anything is written:
// Keycloak silently drops an empty value, and a Keycloak on PostgreSQL
// cannot store a NUL character (it fails the request), so no Keycloak store
// takes either.
func keepable(current, next userattrs.Attributes) error {
	var violations []userattrs.Violation
	for _, k := range next.Keys() {
		if slices.Equal(next[k], current[k]) {
			continue
		}
		for i, v := range next[k] {
			detail := ""
			switch {
			case v == "":
				detail = "Keycloak cannot keep an empty value; remove the attribute with null instead"
			case strings.ContainsRune(v, 0):
				detail = "Keycloak cannot keep a NUL character in a value"
			default:
				continue
			}
			index := i
			if len(next[k]) == 1 {
				index = -1
			}
			violations = append(violations, userattrs.Violation{Key: k, Index: index, Detail: detail})
			break
		}
	}
	if violations != nil {
		return &userattrs.InvalidError{Violations: violations}
	}
	return nil
}
