package server

import (
	"context"
	"net/http"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Tracing turns on a span for every request.
type Tracing struct {
	Provider trace.TracerProvider
	// TrustIncoming makes a request's traceparent the parent of its span.
	// Off, an incoming trace is only linked: a client must not be able to
	// put its spans into the service's traces, or sample them all in.
	TrustIncoming bool
}

// traced wraps h in the request span, when tracing is on.
func traced(h http.Handler, t *Tracing) http.Handler {
	if t == nil || t.Provider == nil {
		return h
	}
	opts := []otelhttp.Option{otelhttp.WithTracerProvider(t.Provider), otelhttp.WithPropagators(propagation.TraceContext{})}
	if !t.TrustIncoming {
		opts = append(opts, otelhttp.WithPublicEndpointFn(func(*http.Request) bool { return true }))
	}
	return otelhttp.NewHandler(h, "request", opts...)
}

// nameSpan names the request's span after its route, known only once the
// mux has matched it, and returns the trace id for the request log line:
// empty when the request is not traced.
func nameSpan(ctx context.Context, route string) string {
	span := trace.SpanFromContext(ctx)
	sc := span.SpanContext()
	if !sc.IsValid() {
		return ""
	}
	span.SetName(route)
	span.SetAttributes(attribute.String("http.route", route))
	return sc.TraceID().String()
}
