package keycloak

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"

	"golang.org/x/sync/errgroup"

	"github.com/userattrs/userattrs"
)

var _ userattrs.Directory = (*Store)(nil)

// adminAPILookups is how many users the Admin API is asked about at once
// where the extension is not installed.
const adminAPILookups = 8

// Known returns which of users the realm knows: through the extension,
// one request per page of users, which one query answers; through the
// Admin API alone, one request per user, a few at a time. Ids that are no
// Keycloak user ids are unknown.
func (s *Store) Known(ctx context.Context, users []string) (map[string]bool, error) {
	if s.closed.Load() {
		return nil, userattrs.ErrClosed
	}
	if s.adminOnly {
		return s.knownAdminAPI(ctx, users)
	}
	body, err := json.Marshal(map[string][]string{"ids": users})
	if err != nil {
		return nil, err
	}
	status, answer, err := s.call(ctx, http.MethodPost, s.extension, "/users/known", body)
	switch {
	case err != nil:
		return nil, err
	case status == http.StatusNotFound || status == http.StatusMethodNotAllowed:
		return nil, errOldExtension
	case status != http.StatusOK:
		return nil, fmt.Errorf("keycloak: POST /users/known through the extension: unexpected status %d", status)
	}
	var out struct {
		Known []string `json:"known"`
	}
	if err := json.Unmarshal(answer, &out); err != nil {
		return nil, fmt.Errorf("keycloak: decode the known users: %w", err)
	}
	known := make(map[string]bool, len(out.Known))
	for _, u := range out.Known {
		known[u] = true
	}
	return known, nil
}

func (s *Store) knownAdminAPI(ctx context.Context, users []string) (map[string]bool, error) {
	found := make([]bool, len(users))
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(adminAPILookups)
	for i, u := range users {
		path, err := userPath(u)
		if err != nil {
			continue
		}
		g.Go(func() error {
			status, _, err := s.call(ctx, http.MethodGet, s.admin, path+"?briefRepresentation=true", nil)
			if err != nil {
				return err
			}
			switch status {
			case http.StatusOK:
				found[i] = true
			case http.StatusNotFound:
			default:
				return fmt.Errorf("keycloak: GET /users/{id}: unexpected status %d", status)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	known := map[string]bool{}
	for i, u := range users {
		if found[i] {
			known[u] = true
		}
	}
	return known, nil
}
