package events_test

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	internaltest "github.com/userattrs/userattrs/internal/testutil"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/events"
)

// outbox is an Outbox in memory, with the holds and parked events the
// stores keep durably.
type outbox struct {
	mu      sync.Mutex
	seq     int64
	pending []userattrs.Record
	holds   map[string]hold
	parked  []userattrs.ParkedEvent
}

type hold struct {
	until time.Time
	retry userattrs.Retry
}

func (o *outbox) add(user string, at time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.seq++
	o.pending = append(o.pending, userattrs.Record{Seq: o.seq, ID: "e" + strconv.FormatInt(o.seq, 10), User: user, Time: at})
}

func (o *outbox) Deliver(ctx context.Context, max int, send func(userattrs.OutboxBatch) userattrs.Outcome) (int, error) {
	o.mu.Lock()
	b := userattrs.OutboxBatch{Retries: map[string]userattrs.Retry{}}
	for _, e := range o.pending {
		h, held := o.holds[e.User]
		if len(b.Events) == max || held && time.Now().Before(h.until) {
			continue
		}
		b.Events = append(b.Events, e)
		if held && h.retry.Attempts > 0 {
			b.Retries[e.User] = h.retry
		}
	}
	o.mu.Unlock()
	if len(b.Events) == 0 {
		return 0, nil
	}
	return len(b.Events), o.Settle(ctx, send(b))
}

func (o *outbox) Settle(_ context.Context, out userattrs.Outcome) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.holds == nil {
		o.holds = map[string]hold{}
	}
	kept := o.pending[:0:0]
	for _, e := range o.pending {
		switch {
		case slices.Contains(out.Delivered, e.Seq):
		case slices.ContainsFunc(out.Parked, func(p userattrs.Parking) bool { return p.Seq == e.Seq }):
			o.parked = append(o.parked, userattrs.ParkedEvent{Seq: e.Seq, Record: e, ParkedAt: time.Now()})
		default:
			kept = append(kept, e)
		}
	}
	o.pending = kept
	for _, u := range out.Released {
		delete(o.holds, u)
	}
	for _, h := range out.Holds {
		o.holds[h.User] = hold{until: time.Now().Add(h.For), retry: userattrs.Retry{Attempts: h.Attempts, Since: h.Since}}
	}
	return nil
}

func (o *outbox) OutboxStats(context.Context) (userattrs.OutboxStats, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	stats := userattrs.OutboxStats{Depth: len(o.pending), Parked: len(o.parked)}
	if len(o.pending) > 0 {
		stats.Oldest = o.pending[0].Time
	}
	return stats, nil
}

func (o *outbox) depth() int {
	s, _ := o.OutboxStats(context.Background())
	return s.Depth
}

func (o *outbox) Parked(context.Context, int64, int) ([]userattrs.ParkedEvent, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.parked), nil
}

func (o *outbox) Unpark(context.Context, string) (bool, error) { return false, nil }

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
		id, user := "e"+strconv.Itoa(i+1), "user"+strconv.Itoa(i%7)
		want[user] = append(want[user], id)
		o.add(user, time.Now())
	}
	s := &sink{refuse: map[string]bool{"e3": true, "e120": true}}
	reg := prometheus.NewRegistry()
	d := events.NewDispatcher(o, events.Config{Sinks: []events.Sink{s}, Workers: 1, Poll: 10 * time.Millisecond, Metrics: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if o.depth() == 0 {
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
	o := &outbox{}
	o.add("alice", time.Now())
	s := &timedSink{refusals: 5}
	d := events.NewDispatcher(o, events.Config{Sinks: []events.Sink{s}, Workers: 1, Poll: time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if o.depth() == 0 {
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
	for range 3 {
		o.add("alice", minuteAgo)
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

// gateSink holds every event of one user until the test opens its gate,
// and takes every other event at once.
type gateSink struct {
	sink
	user string
	gate chan struct{}
}

func (s *gateSink) Send(ctx context.Context, e events.Event) error {
	if e.User == s.user {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return s.sink.Send(ctx, e)
}

func (s *gateSink) got(user string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.accepted[user])
}

// A receiver that hangs for one user delays only that user's events: while
// its first send hangs, every other user's events, claimed before and
// after it, are delivered; once it answers, the user's events follow in
// order.
func TestDispatcherSlowReceiverDelaysOnlyItsUser(t *testing.T) {
	o := &outbox{}
	for range 3 {
		o.add("slow", time.Now())
	}
	for i := range 20 {
		o.add("user"+strconv.Itoa(i%5), time.Now())
	}
	s := &gateSink{user: "slow", gate: make(chan struct{})}
	d := events.NewDispatcher(o, events.Config{Sinks: []events.Sink{s}, Workers: 1, Batch: 5, Poll: 5 * time.Millisecond,
		SendTimeout: time.Minute, BatchWait: 20 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal(what)
			}
		}
	}
	waitFor("other users' events waited for the slow one", func() bool { return o.depth() == 3 })
	for i := range 5 { // and those that come while it hangs
		o.add("user"+strconv.Itoa(i), time.Now())
	}
	waitFor("other users' later events waited for the slow one", func() bool { return o.depth() == 3 })
	if got := s.got("slow"); len(got) != 0 {
		t.Fatalf("the slow user's events went out while its first hung: %v", got)
	}
	close(s.gate)
	waitFor("the slow user's events did not follow", func() bool { return o.depth() == 0 })
	if got := s.got("slow"); !slices.Equal(got, []string{"e1", "e2", "e3"}) {
		t.Fatalf("the slow user's events came as %v", got)
	}
}

// An event that keeps failing is parked after ParkAttempts: it leaves the
// outbox for the parked events, the metric counts it, one ERROR line says
// which, and its user's later events go on.
func TestDispatcherParksWhatKeepsFailing(t *testing.T) {
	o := &outbox{}
	o.add("alice", time.Now())
	o.add("alice", time.Now())
	o.add("bob", time.Now())
	s := &refuseForever{id: "e1"}
	var logs internaltest.SyncBuffer
	reg := prometheus.NewRegistry()
	d := events.NewDispatcher(o, events.Config{Sinks: []events.Sink{s}, Workers: 1, Poll: time.Millisecond,
		RetryFirst: time.Millisecond, RetryMax: 5 * time.Millisecond, ParkAttempts: 4, Metrics: reg,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx); close(done) }()
	for deadline := time.Now().Add(10 * time.Second); o.depth() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the outbox did not drain past the failing event")
		}
	}
	cancel()
	<-done
	parked, _ := o.Parked(ctx, 0, 10)
	if len(parked) != 1 || parked[0].Record.ID != "e1" {
		t.Fatalf("parked %+v, want e1", parked)
	}
	if s.attempts != 4 || !slices.Equal(s.accepted["alice"], []string{"e2"}) || !slices.Equal(s.accepted["bob"], []string{"e3"}) {
		t.Fatalf("%d attempts at e1 (want 4), accepted %v", s.attempts, s.accepted)
	}
	if got := testutil.ToFloat64(d.Parkings()); got != 1 {
		t.Errorf("parkings counted %v, want 1", got)
	}
	var errorLines []string
	for line := range strings.Lines(logs.String()) {
		if strings.Contains(line, "level=ERROR") {
			errorLines = append(errorLines, line)
		}
	}
	if len(errorLines) != 1 || !strings.Contains(errorLines[0], "event=e1") || !strings.Contains(errorLines[0], "attempts=4") {
		t.Fatalf("ERROR lines: %q", errorLines)
	}
}

// refuseForever refuses one event every time, and takes the others.
type refuseForever struct {
	sink
	id       string
	attempts int
}

func (s *refuseForever) Send(ctx context.Context, e events.Event) error {
	if e.ID == s.id {
		s.mu.Lock()
		s.attempts++
		s.mu.Unlock()
		return errors.New("refused")
	}
	return s.sink.Send(ctx, e)
}
