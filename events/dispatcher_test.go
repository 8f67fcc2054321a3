package events_test

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/events"
)

// outbox is an Outbox in memory: what the store's keep durably.
type outbox struct {
	mu      sync.Mutex
	pending []userattrs.Record
}

func (o *outbox) Deliver(_ context.Context, max int, send func([]userattrs.Record) int) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	batch := slices.Clone(o.pending[:min(max, len(o.pending))])
	if len(batch) == 0 {
		return 0, nil
	}
	o.pending = o.pending[send(batch):]
	return len(batch), nil
}

func (o *outbox) OutboxStats(context.Context) (int, time.Time, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.pending), time.Time{}, nil
}

// sink refuses the events listed in refuse once each.
type sink struct {
	mu       sync.Mutex
	refuse   map[string]bool
	accepted []string
	closed   bool
}

func (s *sink) Name() string { return "test" }
func (s *sink) Close() error { s.closed = true; return nil }
func (s *sink) Send(_ context.Context, e events.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse[e.ID] {
		delete(s.refuse, e.ID)
		return errors.New("refused")
	}
	s.accepted = append(s.accepted, e.ID)
	return nil
}

// A refused event holds back the events after it, is sent again after a
// backoff, and then everything goes out once, in order; the counters say
// what happened.
func TestDispatcherKeepsOrderAcrossRefusals(t *testing.T) {
	o := &outbox{}
	var want []string
	for i := range 250 {
		id := "e" + strconv.Itoa(i)
		want = append(want, id)
		o.pending = append(o.pending, userattrs.Record{ID: id, User: "alice", Time: time.Now()})
	}
	s := &sink{refuse: map[string]bool{"e3": true, "e120": true}}
	reg := prometheus.NewRegistry()
	d := events.NewDispatcher(o, events.Config{Sinks: []events.Sink{s}, Workers: 1, Poll: 10 * time.Millisecond, Metrics: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if n, _, _ := o.OutboxStats(ctx); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the outbox did not drain")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if !slices.Equal(s.accepted, want) || !s.closed {
		t.Fatalf("accepted %d events, in order: %v; closed: %v", len(s.accepted), slices.Equal(s.accepted, want), s.closed)
	}
	if got := testutil.ToFloat64(d.Deliveries("test", "failed")); got != 2 {
		t.Errorf("%v failed deliveries counted, want 2", got)
	}
	if got := testutil.ToFloat64(d.Deliveries("test", "delivered")); got != 250 {
		t.Errorf("%v deliveries counted, want 250", got)
	}
}
