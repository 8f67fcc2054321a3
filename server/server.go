// Package server is the HTTP surface of the service: routes, handlers,
// JSON:API errors, request ids, logs and metrics.
package server

import (
	"context"
	"log"
	"log/slog"
	"net/http"
	"path"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/auth"
)

// Config is what the server needs.
type Config struct {
	Service      Service
	Verifier     auth.Verifier
	Logger       *slog.Logger
	Metrics      *prometheus.Registry
	MaxBodyBytes int64
	Readiness    []ReadinessCheck
	// Versions are the API versions that serve the attributes routes;
	// empty means DefaultVersions.
	Versions []string
	// LinkedIdentityRules, when not empty, need LinkedIdentities.
	LinkedIdentityRules LinkedIdentityRules
	LinkedIdentities    LinkedIdentities
	// CheckTimeout bounds what checking a token may wait for: the issuer's
	// keys or an introspection answer (503 beyond). Zero means no bound.
	CheckTimeout time.Duration
	// RateLimits are the optional per-user and per-client limits (429).
	RateLimits RateLimits
	// Outbox, while change events are on, serves the admin API's parked
	// events.
	Outbox userattrs.Outbox
	// Tracing, when set, traces every request.
	Tracing *Tracing
}

// Service is what the routes ask of the domain (*userattrs.Service): a
// user's view and merge, as the user and as an administrator, and the
// history.
type Service interface {
	Get(ctx context.Context, user string) (*userattrs.View, error)
	AdminGet(ctx context.Context, user string) (*userattrs.View, error)
	Merge(ctx context.Context, user string, patch userattrs.Patch, cond userattrs.Precondition) error
	AdminMerge(ctx context.Context, user string, patch userattrs.Patch, cond userattrs.Precondition) error
	History(ctx context.Context, user string, q userattrs.HistoryQuery) ([]userattrs.Record, string, error)
	Erase(ctx context.Context, user string) error
	Export(ctx context.Context, user string) (*userattrs.Export, error)
}

var _ Service = (*userattrs.Service)(nil)

// NewHTTPServer returns the HTTP server of handler with the timeouts that
// keep slow and idle clients from holding connections: headers within 5 s,
// the whole request within 15 s (408 for a body still arriving), and
// idle keep-alive connections closed after 2 minutes.
func NewHTTPServer(handler http.Handler, errorLog *log.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    32 << 10,
		ErrorLog:          errorLog,
	}
}

// NewServer returns the handler of the whole API.
func NewServer(cfg Config) http.Handler {
	mux := http.NewServeMux()
	routes(mux, cfg)
	return traced(observe(cleanPath(mux), cfg.Logger, newHTTPMetrics(cfg.Metrics)), cfg.Tracing)
}

// cleanPath answers 404 for a path with empty, "." or ".." segments. The
// mux would redirect such paths with a plain-text body; no client of this
// API sends them.
func cleanPath(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := r.URL.Path
		if p == "" || p[0] != '/' || path.Clean(p) != p {
			writeNotFound(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	})
}
