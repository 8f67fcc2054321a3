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

func (o *outbox) Deliver(_ context.Context, max int, send func([]userattrs.Record) []bool) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	batch := slices.Clone(o.pending[:min(max, len(o.pending))])
	if len(batch) == 0 {
		return 0, nil
	}
	done := send(batch)
	kept := o.pending[:0:0]
	for i, e := range o.pending {
		if i >= len(batch) || !done[i] {
			kept = append(kept, e)
		}
	}
	o.pending = kept
	return len(batch), nil
}

func (o *outbox) OutboxStats(context.Context) (int, time.Time, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.pending) == 0 {
		return 0, time.Time{}, nil
	}
	return len(o.pending), o.pending[0].Time, nil
}

// sink refuses the events listed in refuse once each.
type sink struct {
	mu       sync.Mutex
	refuse   map[string]bool
	accepted map[string][]string // by user, in the order they came
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
	if s.accepted == nil {
		s.accepted = map[string][]string{}
	}
	s.accepted[e.User] = append(s.accepted[e.User], e.ID)
	return nil
}

// A refused event holds back its user's events after it, is sent again
// after a backoff, and then everything goes out once, each user's in
// order, while other users' events go on; the counters say what happened.
func TestDispatcherKeepsOrderAcrossRefusals(t *testing.T) {
	o := &outbox{}
	want := map[string][]string{}
	for i := range 250 {
		id, user := "e"+strconv.Itoa(i), "user"+strconv.Itoa(i%7)
		want[user] = append(want[user], id)
		o.pending = append(o.pending, userattrs.Record{ID: id, User: user, Time: time.Now()})
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
	for user, ids := range want {
		if !slices.Equal(s.accepted[user], ids) {
			t.Errorf("%s: accepted %v, want %v", user, s.accepted[user], ids)
		}
	}
	if !s.closed {
		t.Error("the sink was not closed")
	}
	if got := testutil.ToFloat64(d.Deliveries("test", "failed")); got != 2 {
		t.Errorf("%v failed deliveries counted, want 2", got)
	}
	if got := testutil.ToFloat64(d.Deliveries("test", "delivered")); got != 250 {
		t.Errorf("%v deliveries counted, want 250", got)
	}
}

// timedSink refuses every event until it has refused refusals times, and
// notes when each attempt came.
type timedSink struct {
	mu       sync.Mutex
	attempts []time.Time
	refusals int
}

func (s *timedSink) Name() string { return "timed" }
func (s *timedSink) Close() error { return nil }
func (s *timedSink) Send(context.Context, events.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.attempts = append(s.attempts, time.Now())
	if len(s.attempts) <= s.refusals {
		return errors.New("down")
	}
	return nil
}

// A sink that keeps refusing is tried again after waits that double (the
// first 100 ms, give or take half for jitter), not at the poll interval:
// each wait is at least half of 100 ms × 2^k. Waits only ever come out
// longer on a busy machine, never shorter.
func TestDispatcherBacksOffExponentially(t *testing.T) {
	o := &outbox{pending: []userattrs.Record{{ID: "e1", User: "alice", Time: time.Now()}}}
	s := &timedSink{refusals: 5}
	d := events.NewDispatcher(o, events.Config{Sinks: []events.Sink{s}, Workers: 1, Poll: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if n, _, _ := o.OutboxStats(ctx); n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the event was not delivered once the sink took it")
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-done
	if len(s.attempts) != 6 {
		t.Fatalf("%d attempts, want 5 refused and 1 delivered", len(s.attempts))
	}
	for k := range 5 {
		gap := s.attempts[k+1].Sub(s.attempts[k])
		if least := 50 * time.Millisecond << k; gap < least {
			t.Errorf("wait %d after a refusal: %v, want at least %v", k+1, gap, least)
		}
	}
}

// The gauges say how many events wait and how old the oldest is, while a
// sink refuses them.
func TestDispatcherReportsTheOutbox(t *testing.T) {
	minuteAgo := time.Now().Add(-time.Minute)
	o := &outbox{}
	for i := range 3 {
		o.pending = append(o.pending, userattrs.Record{ID: "e" + strconv.Itoa(i), User: "alice", Time: minuteAgo})
	}
	reg := prometheus.NewRegistry()
	d := events.NewDispatcher(o, events.Config{Sinks: []events.Sink{&timedSink{refusals: 1 << 30}}, Workers: 1, Metrics: reg})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go d.Run(ctx)
	gauge := func(name string) float64 {
		families, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range families {
			if f.GetName() == name {
				return f.GetMetric()[0].GetGauge().GetValue()
			}
		}
		return -1
	}
	deadline := time.Now().Add(10 * time.Second)
	for gauge("userattrs_events_outbox_depth") != 3 {
		if time.Now().After(deadline) {
			t.Fatalf("depth %v, want 3", gauge("userattrs_events_outbox_depth"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if age := gauge("userattrs_events_outbox_oldest_age_seconds"); age < 60 || age > 120 {
		t.Errorf("oldest age %v s, want about 60", age)
	}
}
