package events

import (
	"context"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/internal/tracing"
)

// deliverySpan starts the span of one event's delivery, a child of the
// request that made the change (its traceparent, queued with the event),
// and gives the event that span's traceparent for its receivers. Where
// tracing is off on this instance the event passes the request's on.
func deliverySpan(ctx context.Context, rec *userattrs.Record) (context.Context, func(error)) {
	if rec.TraceParent == "" {
		return ctx, func(error) {}
	}
	ctx, span := otel.Tracer("github.com/userattrs/userattrs/events").Start(tracing.WithParent(ctx, rec.TraceParent), "outbox delivery",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.String("userattrs.event.id", rec.ID), attribute.String("messaging.operation.type", "send")))
	if parent := tracing.TraceParent(ctx); parent != "" {
		rec.TraceParent = parent
	}
	return ctx, func(err error) {
		if err != nil {
			span.SetStatus(codes.Error, "not delivered")
		}
		span.End()
	}
}
