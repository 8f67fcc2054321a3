// Package metrics instruments the parts of the service that the HTTP
// metrics cannot see, such as store operations: their metrics, and their
// spans within traced requests.
package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/userattrs/userattrs"
)

// Store measures the operations of a store: their latency and outcome.
type Store struct {
	next     userattrs.Store
	name     string
	duration *prometheus.HistogramVec
}

var (
	_ userattrs.Store   = (*Store)(nil)
	_ userattrs.History = (*historyStore)(nil)
)

// InstrumentStore wraps s so that every operation is measured under the
// store's name. The wrapper keeps a history where s does; what else s
// implements (an outbox, linked identities), userattrs.As finds through
// Unwrap.
func InstrumentStore(s userattrs.Store, name string, reg prometheus.Registerer) userattrs.Store {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:        "userattrs_store_operation_duration_seconds",
		Help:        "Time of a store operation, by operation and result.",
		ConstLabels: prometheus.Labels{"store": name},
		Buckets:     []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"operation", "result"})
	reg.MustRegister(duration)
	m := &Store{next: s, name: name, duration: duration}
	if h, ok := s.(userattrs.History); ok {
		return &historyStore{Store: m, history: h}
	}
	return m
}

// begin starts measuring op, and a span of it within a traced request;
// the operation's end ends both. Untraced, it allocates nothing.
func (s *Store) begin(ctx context.Context, op string) (context.Context, operation) {
	o := operation{store: s, op: op, start: time.Now()}
	if trace.SpanContextFromContext(ctx).IsValid() {
		ctx, o.span = tracer.Start(ctx, "store "+op, trace.WithAttributes(attribute.String("userattrs.store", s.name)))
	}
	return ctx, o
}

// operation is one measured store operation.
type operation struct {
	store *Store
	op    string
	start time.Time
	span  trace.Span // nil when not traced
}

func (o operation) end(errp *error) {
	result := o.store.observe(o.op, o.start, errp)
	if o.span == nil {
		return
	}
	if result != "ok" {
		o.span.SetStatus(codes.Error, result)
	}
	o.span.End()
}

var tracer = otel.Tracer("github.com/userattrs/userattrs/metrics")

func (s *Store) observe(op string, start time.Time, errp *error) string {
	err := *errp
	result := "ok"
	switch {
	case err == nil:
	case errors.Is(err, userattrs.ErrUserNotFound):
		result = "not_found"
	case errors.Is(err, userattrs.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		result = "unavailable"
	default:
		// The updater's own refusals (precondition, limits) count as
		// errors of the operation too: they aborted it.
		result = "error"
	}
	s.duration.WithLabelValues(op, result).Observe(time.Since(start).Seconds())
	return result
}

func (s *Store) Get(ctx context.Context, user string) (a userattrs.Attributes, err error) {
	ctx, o := s.begin(ctx, "get")
	defer o.end(&err)
	return s.next.Get(ctx, user)
}

func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) (err error) {
	ctx, o := s.begin(ctx, "update")
	defer o.end(&err)
	return s.next.Update(ctx, user, update)
}

func (s *Store) Ping(ctx context.Context) (err error) {
	ctx, o := s.begin(ctx, "ping")
	defer o.end(&err)
	return s.next.Ping(ctx)
}

func (s *Store) Close() error { return s.next.Close() }

func (s *Store) Capabilities() userattrs.Capabilities { return s.next.Capabilities() }

// Unwrap returns the store s measures, for userattrs.As.
func (s *Store) Unwrap() userattrs.Store { return s.next }

// historyStore measures a store that keeps a history, and is one, so that
// a type assertion tells a wrapped store with a history from one without.
type historyStore struct {
	*Store
	history userattrs.History
}

// History passes a history query on, measured.
func (s *historyStore) History(ctx context.Context, user string, q userattrs.HistoryQuery) (r []userattrs.Record, err error) {
	ctx, o := s.begin(ctx, "history")
	defer o.end(&err)
	return s.history.History(ctx, user, q)
}

// CursorKey passes on the key of the history's cursors.
func (s *historyStore) CursorKey(ctx context.Context) ([]byte, error) {
	return s.history.CursorKey(ctx)
}

// PruneHistory passes pruning on, measured.
func (s *historyStore) PruneHistory(ctx context.Context, before time.Time, limit int) (n int, err error) {
	ctx, o := s.begin(ctx, "prune_history")
	defer o.end(&err)
	return s.history.PruneHistory(ctx, before, limit)
}
