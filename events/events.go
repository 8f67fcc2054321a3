// Package events delivers change events: a dispatcher takes them from a
// store's transactional outbox and sends them, as CloudEvents 1.0 in JSON,
// to every sink (NATS JetStream, signed webhooks), at least once and in
// each user's order.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	cloudevents "github.com/cloudevents/sdk-go/v2/event"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
)

// Type is the CloudEvents type of a change event.
const Type = "io.userattrs.attributes.changed.v1"

// DefaultSource is the CloudEvents source when none is configured.
const DefaultSource = "/userattrs"

// Event is one change event ready to send: its id, its user, and its
// encoded CloudEvent.
type Event struct {
	ID   string
	User string
	Body []byte // application/cloudevents+json
}

// Encode turns a change's record into its CloudEvent: id, source, type,
// time, subject (the user) and the record as data.
func Encode(source string, rec userattrs.Record) (Event, error) {
	e := cloudevents.New()
	e.SetID(rec.ID)
	e.SetSource(source)
	e.SetType(Type)
	e.SetTime(rec.Time)
	e.SetSubject(rec.User)
	if err := e.SetData("application/json", rec); err != nil {
		return Event{}, err
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	body, err := json.Marshal(e)
	return Event{ID: rec.ID, User: rec.User, Body: body}, err
}

// Sink is where events go.
type Sink interface {
	// Name names the sink in metrics and logs.
	Name() string
	// Send delivers one event, and returns nil only once the sink has
	// accepted it.
	Send(ctx context.Context, e Event) error
	Close() error
}

// Config configures a Dispatcher.
type Config struct {
	Source string
	Sinks  []Sink
	// Workers is how many parts of the outbox one instance delivers at
	// once (default 2). On PostgreSQL each holds a pool connection while
	// it delivers, beside the store's writers and readers.
	Workers int
	// Batch is the most events a worker claims at once (default 100).
	Batch int
	// Concurrency is how many users' events a worker sends at once, each
	// user's in order (default 16).
	Concurrency int
	// Poll is how long an idle worker waits before it looks again (default
	// 200ms).
	Poll time.Duration
	// SendTimeout bounds one send to one sink (default 10s).
	SendTimeout time.Duration
	// MaxDepth bounds the outbox: while it holds that many events or more,
	// Admit refuses changes and Ready fails (0: no bound). It is checked
	// as the outbox gauges are, every StatsEvery (default 1s), so the
	// outbox may pass it by what arrives in between.
	MaxDepth   int
	StatsEvery time.Duration
	Logger     *slog.Logger
	Metrics    prometheus.Registerer
}

// Dispatcher delivers the events of an outbox until its context ends.
type Dispatcher struct {
	outbox userattrs.Outbox
	cfg    Config

	depth      prometheus.Gauge
	oldest     prometheus.Gauge
	deliveries *prometheus.CounterVec
	pastBound  atomic.Int64 // the outbox's depth when past MaxDepth, else 0
}

// NewDispatcher returns a dispatcher of outbox's events to cfg's sinks.
func NewDispatcher(outbox userattrs.Outbox, cfg Config) *Dispatcher {
	if cfg.Source == "" {
		cfg.Source = DefaultSource
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.Batch <= 0 {
		cfg.Batch = 100
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 16
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.SendTimeout <= 0 {
		cfg.SendTimeout = 10 * time.Second
	}
	if cfg.StatsEvery <= 0 {
		cfg.StatsEvery = time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	d := &Dispatcher{outbox: outbox, cfg: cfg,
		depth: prometheus.NewGauge(prometheus.GaugeOpts{Name: "userattrs_events_outbox_depth",
			Help: "Change events in the outbox, not yet delivered."}),
		oldest: prometheus.NewGauge(prometheus.GaugeOpts{Name: "userattrs_events_outbox_oldest_age_seconds",
			Help: "Age of the oldest undelivered change event; 0 when none waits."}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "userattrs_events_deliveries_total",
			Help: "Attempts to deliver a change event to a sink, by sink and result (delivered, failed)."}, []string{"sink", "result"}),
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(d.depth, d.oldest, d.deliveries)
	}
	return d
}

// Run delivers events until ctx ends, then closes the sinks.
func (d *Dispatcher) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for range d.cfg.Workers {
		wg.Go(func() { d.work(ctx) })
	}
	wg.Go(func() { d.watch(ctx) })
	wg.Wait()
	for _, s := range d.cfg.Sinks {
		s.Close()
	}
}

// work claims events and sends them; after a failure it waits longer
// each time (exponential backoff with jitter, up to 30 s), after an empty
// outbox a poll interval.
func (d *Dispatcher) work(ctx context.Context) {
	retry := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: 30 * time.Second}
	retry.Reset()
	for ctx.Err() == nil {
		failed := false
		n, err := d.outbox.Deliver(ctx, d.cfg.Batch, func(records []userattrs.Record) []bool {
			done, refused := d.send(ctx, records)
			failed = refused
			return done
		})
		if err != nil && ctx.Err() == nil {
			d.cfg.Logger.Warn("events: the outbox cannot be read", "error", err.Error())
			failed = true
		}
		var wait time.Duration
		switch {
		case failed:
			wait = retry.NextBackOff()
		case n == 0:
			retry.Reset()
			wait = d.cfg.Poll
		default:
			retry.Reset()
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
	}
}

// send delivers a batch to every sink: each user's events one after
// another, in order, and different users' at once. A user's events stop
// at the first refusal, so that no later one overtakes it; that one and
// the rest of the user's come again with a later batch. An event one sink
// accepted is sent to it again when another refused it: at least once,
// with the same id. done reports which events every sink accepted.
func (d *Dispatcher) send(ctx context.Context, records []userattrs.Record) (done []bool, refused bool) {
	done = make([]bool, len(records))
	byUser := map[string][]int{}
	var users []string
	for i, r := range records {
		if _, ok := byUser[r.User]; !ok {
			users = append(users, r.User)
		}
		byUser[r.User] = append(byUser[r.User], i)
	}
	var anyRefused atomic.Bool
	slots := make(chan struct{}, d.cfg.Concurrency)
	var wg sync.WaitGroup
	for _, user := range users {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			for _, i := range byUser[user] {
				if !d.deliver(ctx, records[i]) {
					anyRefused.Store(true)
					return
				}
				done[i] = true
			}
		})
	}
	wg.Wait()
	return done, anyRefused.Load()
}

// deliver sends one event to every sink, and reports whether all took it.
func (d *Dispatcher) deliver(ctx context.Context, rec userattrs.Record) bool {
	e, err := Encode(d.cfg.Source, rec)
	if err != nil {
		d.cfg.Logger.Error("events: a record does not encode", "event", rec.ID, "error", err.Error())
		return false
	}
	for _, s := range d.cfg.Sinks {
		sctx, cancel := context.WithTimeout(ctx, d.cfg.SendTimeout)
		err := s.Send(sctx, e)
		cancel()
		if err != nil {
			d.deliveries.WithLabelValues(s.Name(), "failed").Inc()
			if ctx.Err() == nil {
				d.cfg.Logger.Warn("events: a sink refused an event", "sink", s.Name(), "event", e.ID, "error", err.Error())
			}
			return false
		}
		d.deliveries.WithLabelValues(s.Name(), "delivered").Inc()
	}
	return true
}

// Deliveries is the counter of deliveries to sink with result (delivered,
// failed).
func (d *Dispatcher) Deliveries(sink, result string) prometheus.Counter {
	return d.deliveries.WithLabelValues(sink, result)
}

// watch keeps the outbox gauges, and whether the outbox is past its
// bound, current.
func (d *Dispatcher) watch(ctx context.Context) {
	for {
		depth, oldest, err := d.outbox.OutboxStats(ctx)
		if err == nil {
			d.depth.Set(float64(depth))
			age := 0.0
			if !oldest.IsZero() {
				age = max(time.Since(oldest).Seconds(), 0)
			}
			d.oldest.Set(age)
			past := 0
			if d.cfg.MaxDepth > 0 && depth >= d.cfg.MaxDepth {
				past = depth
			}
			if d.pastBound.Swap(int64(past)) == 0 && past > 0 {
				d.cfg.Logger.Error("events: the outbox is past its bound; changes are refused until the sinks take its events",
					"depth", depth, "bound", d.cfg.MaxDepth)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(d.cfg.StatsEvery):
		}
	}
}

// Admit refuses a change while the outbox is past its bound: a change is
// never acknowledged without its event, so none is taken that the outbox
// has no room for.
func (d *Dispatcher) Admit() error {
	if n := d.pastBound.Load(); n > 0 {
		return fmt.Errorf("%w: %d change events wait undelivered, the bound is %d", userattrs.ErrOutboxFull, n, d.cfg.MaxDepth)
	}
	return nil
}

// Ready fails, saying why, while the outbox is past its bound.
func (d *Dispatcher) Ready(context.Context) error { return d.Admit() }

// ErrRefused is a sink's answer that it did not take an event.
var ErrRefused = errors.New("the sink refused the event")

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}
