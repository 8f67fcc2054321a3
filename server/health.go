package server

import (
	"context"
	"net/http"
	"time"
)

// ReadinessCheck is one dependency the service needs to serve requests.
type ReadinessCheck struct {
	Name  string
	Check func(ctx context.Context) error
}

// readinessTimeout bounds one readiness probe, so that a hanging dependency
// fails the probe instead of hanging it.
const readinessTimeout = 3 * time.Second

func liveness() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeOK(w)
	})
}

// readiness answers 200 while every check passes, 503 otherwise, and logs
// which check failed and why, which only the operator needs to know.
func readiness(checks []ReadinessCheck) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), readinessTimeout)
		defer cancel()
		for _, c := range checks {
			if err := c.Check(ctx); err != nil {
				logFrom(r.Context()).Warn("not ready", "check", c.Name, "error", err.Error())
				writeErrors(w, r, newError(http.StatusServiceUnavailable, codeStoreUnavailable,
					"the service cannot reach a backend it needs: "+c.Name))
				return
			}
		}
		writeOK(w)
	})
}

func writeOK(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Write([]byte("OK\n"))
}
