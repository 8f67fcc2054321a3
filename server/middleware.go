package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/xid"

	"github.com/userattrs/userattrs/auth"
)

// requestState is what the middleware learns about a request as it is
// served: the handlers fill it in, the observer reads it afterwards.
type requestState struct {
	id       string
	base     *slog.Logger
	logger   *slog.Logger // base with the request id, made on first use
	identity auth.Identity
	// code is the JSON:API error code of the answer, if it was an error.
	code string
}

// log returns the logger of the request. Most requests log only their
// request line, so the logger that carries the id is made when needed.
func (s *requestState) log() *slog.Logger {
	if s.logger == nil {
		s.logger = s.base.With("request_id", s.id)
	}
	return s.logger
}

type stateKey struct{}

func stateFrom(ctx context.Context) *requestState {
	s, _ := ctx.Value(stateKey{}).(*requestState)
	return s
}

// requestID returns the id of the request being served.
func requestID(ctx context.Context) string {
	if s := stateFrom(ctx); s != nil {
		return s.id
	}
	return ""
}

// logFrom returns the logger of the request, which carries its id.
func logFrom(ctx context.Context) *slog.Logger {
	if s := stateFrom(ctx); s != nil {
		return s.log()
	}
	return slog.Default()
}

// statusRecorder remembers the status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (w *statusRecorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusRecorder) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusRecorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// httpMetrics are the request metrics of the service.
type httpMetrics struct {
	requests *prometheus.CounterVec
	errors   *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userattrs_http_requests_total",
			Help: "HTTP requests served, by route, method and status.",
		}, []string{"route", "method", "status"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "userattrs_http_errors_total",
			Help: "Error answers, by route and JSON:API error code (store-unavailable, rate-limited, ...).",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "userattrs_http_request_duration_seconds",
			Help:    "Time to serve an HTTP request, by route and method.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route", "method"}),
	}
	reg.MustRegister(m.requests, m.errors, m.duration)
	return m
}

// knownMethods keeps the method label of the metrics bounded: any other
// method a client invents is counted as "other".
var knownMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPut: true, http.MethodPost: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true,
}

// probeRoutes are the routes of load balancers and monitoring, logged at
// debug level only.
var probeRoutes = map[string]bool{
	"GET /health/liveness": true, "GET /health/readiness": true, "GET /metrics": true,
}

// observe gives every request an id, recovers panics, and logs and counts
// the request once it is served.
func observe(next http.Handler, logger *slog.Logger, m *httpMetrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("Request-Id")
		if _, err := xid.FromString(id); err != nil {
			id = xid.New().String()
		}
		w.Header()["Request-Id"] = []string{id}
		state := &requestState{id: id, base: logger}
		r = r.WithContext(context.WithValue(r.Context(), stateKey{}, state))
		rec := &statusRecorder{ResponseWriter: w}

		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v)
				}
				// The panic value may hold request data: log its type and
				// the stack, never the value.
				state.log().Error("panic", "type", fmt.Sprintf("%T", v), "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeInternalError(rec, r)
				}
			}
			status := rec.status
			if status == 0 {
				status = http.StatusOK
			}
			// Send the response before logging and counting it: the client
			// need not wait for either. net/http would flush only after.
			if rec.status != 0 {
				http.NewResponseController(rec).Flush()
			}
			route := r.Pattern
			if route == "" || route == "/" {
				route = "unknown"
			}
			method := r.Method
			if !knownMethods[method] {
				method = "other"
			}
			elapsed := time.Since(start)
			m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
			m.duration.WithLabelValues(route, method).Observe(elapsed.Seconds())
			if state.code != "" {
				m.errors.WithLabelValues(route, state.code).Inc()
			}
			level := slog.LevelInfo
			if probeRoutes[route] {
				// Every few seconds from every kubelet and Prometheus: the
				// metrics count them, and a failing readiness logs why.
				level = slog.LevelDebug
			}
			line := [...]slog.Attr{
				slog.String("request_id", id),
				slog.String("method", method),
				slog.String("route", route),
				slog.Int("status", status),
				slog.Float64("duration_ms", float64(elapsed.Microseconds())/1000),
				slog.String("client_id", state.identity.ClientID),
				{},
			}
			n := len(line) - 1
			if trace := nameSpan(r.Context(), route); trace != "" {
				line[n] = slog.String("trace_id", trace)
				n++
			}
			logger.LogAttrs(r.Context(), level, "request", line[:n]...)
		}()
		next.ServeHTTP(rec, r)
	})
}
