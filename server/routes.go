package server

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// routes registers the whole API. Patterns with a method win over the same
// pattern without one, which therefore answers 405 for the other methods.
func routes(mux *http.ServeMux, cfg Config) {
	authn := authenticator{verifier: cfg.Verifier, rules: cfg.LinkedIdentityRules, links: cfg.LinkedIdentities, timeout: cfg.CheckTimeout,
		limits: newRateLimiter(cfg.RateLimits, cfg.Metrics)}
	served := cfg.Versions
	if len(served) == 0 {
		served = DefaultVersions
	}
	versions := map[string]bool{}
	for _, v := range served {
		versions[v] = true
	}
	mux.Handle("GET /user/{version}/attributes",
		knownVersion(versions, authn.require(scopeRead, getAttributes(cfg.Service.Get, tokenUser))))
	large := newLargeBodies()
	mux.Handle("PUT /user/{version}/attributes",
		knownVersion(versions, authn.require(scopeWrite, putAttributes(cfg.Service.Merge, cfg.MaxBodyBytes, tokenUser, large))))
	mux.Handle("/user/{version}/attributes", knownVersion(versions, methodNotAllowed("GET, HEAD, PUT")))

	mux.Handle("GET /admin/users/{id}/attributes", authn.requireAdmin(getAttributes(cfg.Service.AdminGet, pathUser)))
	mux.Handle("PUT /admin/users/{id}/attributes", authn.requireAdmin(putAttributes(cfg.Service.AdminMerge, cfg.MaxBodyBytes, pathUser, large)))
	mux.Handle("DELETE /admin/users/{id}/attributes", authn.requireAdmin(eraseUser(cfg.Service, cfg.Logger)))
	mux.Handle("/admin/users/{id}/attributes", methodNotAllowed("GET, HEAD, PUT, DELETE"))
	mux.Handle("GET /admin/users/{id}/export", authn.requireAdmin(exportUser(cfg.Service)))
	mux.Handle("/admin/users/{id}/export", methodNotAllowed("GET, HEAD"))
	mux.Handle("GET /admin/users/{id}/attributes/history", authn.requireAdmin(getHistory(cfg.Service)))
	mux.Handle("/admin/users/{id}/attributes/history", methodNotAllowed("GET, HEAD"))
	mux.Handle("GET /admin/events/parked", authn.requireAdmin(getParked(cfg.Outbox)))
	mux.Handle("/admin/events/parked", methodNotAllowed("GET, HEAD"))
	mux.Handle("POST /admin/events/parked/{eventId}/resend", authn.requireAdmin(resendParked(cfg.Outbox)))
	mux.Handle("/admin/events/parked/{eventId}/resend", methodNotAllowed("POST"))

	mux.Handle("GET /health/liveness", liveness())
	mux.Handle("/health/liveness", methodNotAllowed("GET, HEAD"))
	mux.Handle("GET /health/readiness", readiness(cfg.Readiness))
	mux.Handle("/health/readiness", methodNotAllowed("GET, HEAD"))
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics, promhttp.HandlerOpts{}))
	mux.Handle("/metrics", methodNotAllowed("GET, HEAD"))

	mux.Handle("/", http.HandlerFunc(writeNotFound))
}

func methodNotAllowed(allow string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeErrors(w, r, newError(http.StatusMethodNotAllowed, codeMethodNotAllowed,
			"this resource allows "+allow))
	})
}

func writeNotFound(w http.ResponseWriter, r *http.Request) {
	writeErrors(w, r, newError(http.StatusNotFound, codeNotFound, "there is no resource at this path"))
}
