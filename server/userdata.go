package server

import (
	"log/slog"
	"net/http"

	"github.com/userattrs/userattrs"
)

// eraseUser erases everything the service keeps of the path's user and
// answers 204 once the erasure is committed. It logs that it happened,
// with who asked and no value: on stores that keep no record of their own
// (Keycloak), the log is the record.
func eraseUser(svc Service, logger *slog.Logger) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := pathUser(w, r)
		if !ok {
			return
		}
		ctx := withOrigin(r)
		if err := svc.Erase(ctx, user); err != nil {
			writeError(w, r, err)
			return
		}
		o := userattrs.OriginOf(ctx)
		logger.LogAttrs(ctx, slog.LevelInfo, "erased a user's data", slog.String("user", user), slog.String("actor", o.Actor),
			slog.String("client_id", o.ClientID), slog.String("request_id", o.RequestID))
		w.Header()["Cache-Control"] = noStore
		w.WriteHeader(http.StatusNoContent)
	})
}

// exportUser serves everything the service keeps of the path's user as
// one JSON:API resource of type user-exports.
func exportUser(svc Service) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, ok := pathUser(w, r)
		if !ok {
			return
		}
		x, err := svc.Export(r.Context(), user)
		if err != nil {
			writeError(w, r, err)
			return
		}
		writeDocument(w, r, struct {
			Data  resource[*userattrs.Export] `json:"data"`
			Links map[string]string           `json:"links"`
		}{resource[*userattrs.Export]{Type: "user-exports", ID: user, Attributes: x}, map[string]string{"self": r.URL.RequestURI()}})
	})
}
