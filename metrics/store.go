// Package metrics instruments the parts of the service that the HTTP
// metrics cannot see, such as store operations.
package metrics

import (
	"context"
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
)

// Store measures the operations of a store: their latency and outcome.
type Store struct {
	next     userattrs.Store
	duration *prometheus.HistogramVec
}

var _ userattrs.Store = (*Store)(nil)

// InstrumentStore wraps s so that every operation is measured under the
// store's name.
func InstrumentStore(s userattrs.Store, name string, reg prometheus.Registerer) *Store {
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:        "userattrs_store_operation_duration_seconds",
		Help:        "Time of a store operation, by operation and result.",
		ConstLabels: prometheus.Labels{"store": name},
		Buckets:     []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
	}, []string{"operation", "result"})
	reg.MustRegister(duration)
	return &Store{next: s, duration: duration}
}

func (s *Store) observe(op string, start time.Time, errp *error) {
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
}

func (s *Store) Get(ctx context.Context, user string) (a userattrs.Attributes, err error) {
	defer s.observe("get", time.Now(), &err)
	return s.next.Get(ctx, user)
}

func (s *Store) Update(ctx context.Context, user string, update func(userattrs.Attributes) (userattrs.Attributes, error)) (err error) {
	defer s.observe("update", time.Now(), &err)
	return s.next.Update(ctx, user, update)
}

func (s *Store) Ping(ctx context.Context) (err error) {
	defer s.observe("ping", time.Now(), &err)
	return s.next.Ping(ctx)
}

func (s *Store) Close() error { return s.next.Close() }

func (s *Store) Capabilities() userattrs.Capabilities { return s.next.Capabilities() }

// History passes a history query on, measured, to a store that keeps a
// history (Capabilities.History).
func (s *Store) History(ctx context.Context, user string, q userattrs.HistoryQuery) (r []userattrs.Record, err error) {
	defer s.observe("history", time.Now(), &err)
	h, ok := s.next.(userattrs.History)
	if !ok {
		return nil, userattrs.ErrNoHistory
	}
	return h.History(ctx, user, q)
}

// CursorKey passes on the key of the history's cursors.
func (s *Store) CursorKey(ctx context.Context) ([]byte, error) {
	h, ok := s.next.(userattrs.History)
	if !ok {
		return nil, userattrs.ErrNoHistory
	}
	return h.CursorKey(ctx)
}

// PruneHistory passes pruning on, measured.
func (s *Store) PruneHistory(ctx context.Context, before time.Time, limit int) (n int, err error) {
	defer s.observe("prune_history", time.Now(), &err)
	h, ok := s.next.(userattrs.History)
	if !ok {
		return 0, userattrs.ErrNoHistory
	}
	return h.PruneHistory(ctx, before, limit)
}
