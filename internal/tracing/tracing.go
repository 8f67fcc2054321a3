// Package tracing holds what the service's parts share of OpenTelemetry
// tracing: whether it is on, and the HTTP transport that traces the
// service's own calls (Keycloak, the issuer's keys, introspection).
package tracing

import (
	"net/http"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
)

var on atomic.Bool

// Enable turns tracing on for the transports made from now on; the
// program does it once, after it has set the global tracer provider.
func Enable() { on.Store(true) }

// On reports whether tracing is on.
func On() bool { return on.Load() }

// Transport returns rt, tracing each call as a client span named name
// (with the traceparent sent along) when tracing is on. Off, it is rt
// itself: the calls cost nothing more.
func Transport(rt http.RoundTripper, name string) http.RoundTripper {
	if !On() {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt, otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return name + " " + r.Method }))
}
