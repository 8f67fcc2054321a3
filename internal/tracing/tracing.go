// Package tracing holds what the service's parts share of OpenTelemetry
// tracing: whether it is on, and the HTTP transport that traces the
// service's own calls (Keycloak, the issuer's keys, introspection).
package tracing

import (
	"context"
	"net/http"
	"sync/atomic"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

var on atomic.Bool

// Enable turns tracing on for the transports made from now on; the
// program does it once, after it has set the global tracer provider.
func Enable() { on.Store(true) }

// TraceParent is the W3C traceparent of the span ctx carries: what a
// change's event and a delivery's headers carry on. Empty without a span.
func TraceParent(ctx context.Context) string {
	if !trace.SpanContextFromContext(ctx).IsValid() {
		return ""
	}
	carrier := propagation.MapCarrier{}
	propagation.TraceContext{}.Inject(ctx, carrier)
	return carrier.Get("traceparent")
}

// WithParent returns ctx with the remote span of traceParent as the parent
// of the spans started from it.
func WithParent(ctx context.Context, traceParent string) context.Context {
	return propagation.TraceContext{}.Extract(ctx, propagation.MapCarrier{"traceparent": traceParent})
}

// Transport returns rt, tracing each call as a client span named name
// (with the traceparent sent along) when tracing is on. Off, it is rt
// itself: the calls cost nothing more.
func Transport(rt http.RoundTripper, name string) http.RoundTripper {
	if !on.Load() {
		return rt
	}
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt, otelhttp.WithPropagators(propagation.TraceContext{}),
		otelhttp.WithSpanNameFormatter(func(_ string, r *http.Request) string { return name + " " + r.Method }))
}
