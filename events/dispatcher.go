package events

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
)

// Config configures a Dispatcher.
type Config struct {
	Source string
	Sinks  []Sink
	// Workers is how many parts of the outbox one instance delivers at
	// once (default 2). On PostgreSQL each holds a pool connection while
	// it claims a batch and waits for it.
	Workers int
	// Batch is the most events a worker claims at once (default 100).
	Batch int
	// Concurrency is how many users' events a worker sends at once, each
	// user's in order (default 16), batches and the sends that went on
	// past them together.
	Concurrency int
	// Poll is how long an idle worker waits before it looks again (default
	// 200ms).
	Poll time.Duration
	// SendTimeout bounds one send to one sink (default 10s).
	SendTimeout time.Duration
	// BatchWait is how long a batch waits for its users' sends (default
	// 250ms). A user's send still under way then goes on beside the next
	// batches, and the user is held, on every instance, until it ends:
	// one slow receiver delays only its own user's events.
	BatchWait time.Duration
	// RetryFirst and RetryMax bound the wait before a user's failed event
	// is tried again: RetryFirst after the first failure (default 100ms),
	// doubling, with jitter, up to RetryMax (default 30s).
	RetryFirst, RetryMax time.Duration
	// ParkAttempts and ParkAge: an event that failed that many attempts
	// (0: no such bound), or failed for that long since its first failure
	// (default 24h; negative: no such bound), is parked: it leaves the
	// outbox for the parked events, which the admin API lists and sends
	// again, and its user's later events go on.
	ParkAttempts int
	ParkAge      time.Duration
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
	parked     prometheus.Gauge
	parkings   prometheus.Counter
	deliveries *prometheus.CounterVec
	pastBound  atomic.Int64 // the outbox's depth when past MaxDepth, else 0

	slots chan struct{} // a user's sends take one while they go on
	mu    sync.Mutex
	busy  map[string]bool // users whose sends go on past their batch
	wg    sync.WaitGroup  // those sends
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
	if cfg.BatchWait <= 0 {
		cfg.BatchWait = 250 * time.Millisecond
	}
	if cfg.RetryFirst <= 0 {
		cfg.RetryFirst = 100 * time.Millisecond
	}
	if cfg.RetryMax <= 0 {
		cfg.RetryMax = 30 * time.Second
	}
	if cfg.ParkAge == 0 {
		cfg.ParkAge = 24 * time.Hour
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
		parked: prometheus.NewGauge(prometheus.GaugeOpts{Name: "userattrs_events_parked",
			Help: "Change events parked after failing too long, waiting to be sent again through the admin API."}),
		parkings: prometheus.NewCounter(prometheus.CounterOpts{Name: "userattrs_events_parked_total",
			Help: "Change events this instance parked after failing too long."}),
		deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "userattrs_events_deliveries_total",
			Help: "Attempts to deliver a change event to a sink, by sink and result (delivered, failed)."}, []string{"sink", "result"}),
		slots: make(chan struct{}, cfg.Workers*cfg.Concurrency),
		busy:  map[string]bool{},
	}
	if cfg.Metrics != nil {
		cfg.Metrics.MustRegister(d.depth, d.oldest, d.parked, d.parkings, d.deliveries)
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
	d.wg.Wait()
	for _, s := range d.cfg.Sinks {
		s.Close()
	}
}

// work claims batches and sends them until ctx ends: at once after a
// batch, after a poll interval when none waits, and after a backoff while
// the outbox cannot be read. Failed sends wait per user, through holds.
func (d *Dispatcher) work(ctx context.Context) {
	retry := &backoff.ExponentialBackOff{InitialInterval: 100 * time.Millisecond, RandomizationFactor: 0.5,
		Multiplier: 2, MaxInterval: 30 * time.Second}
	retry.Reset()
	for ctx.Err() == nil {
		var b *batch
		n, err := d.outbox.Deliver(ctx, d.cfg.Batch, func(ob userattrs.OutboxBatch) userattrs.Outcome {
			b = d.start(ctx, ob)
			return d.wait(ctx, b)
		})
		if b != nil {
			close(b.applied) // the sends that went on past it may settle now
		}
		var wait time.Duration
		switch {
		case err != nil && ctx.Err() == nil:
			d.cfg.Logger.Warn("events: the outbox cannot be read", "error", err.Error())
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

// batch is one claimed batch's sends: one run per user, each in order.
type batch struct {
	runs    []*run
	pending atomic.Int32
	done    chan struct{} // closed when every started run has ended
	over    chan struct{} // closed when the batch stops waiting
	applied chan struct{} // closed once the batch's outcome is applied
}

func (b *batch) end() {
	if b.pending.Add(-1) == 0 {
		close(b.done)
	}
}

// run is one user's sends in a batch.
type run struct {
	user     string
	events   []userattrs.Record
	retry    userattrs.Retry
	retrying bool // the user's earlier attempts failed

	mu       sync.Mutex
	started  bool
	ended    bool
	detached bool // went on past its batch; settles on its own
	dropped  bool // never started: its batch ended first
	out      userattrs.Outcome
}

// start sends a batch: each user's events one after another, in order,
// and different users' at once. Users whose sends still go on past an
// earlier batch are left for a later one.
func (d *Dispatcher) start(ctx context.Context, ob userattrs.OutboxBatch) *batch {
	b := &batch{done: make(chan struct{}), over: make(chan struct{}), applied: make(chan struct{})}
	byUser := map[string]*run{}
	d.mu.Lock()
	for _, e := range ob.Events {
		r := byUser[e.User]
		if r == nil {
			if d.busy[e.User] {
				continue
			}
			retry, retrying := ob.Retries[e.User]
			r = &run{user: e.User, retry: retry, retrying: retrying}
			byUser[e.User] = r
			b.runs = append(b.runs, r)
		}
		r.events = append(r.events, e)
	}
	d.mu.Unlock()
	b.pending.Store(int32(len(b.runs)))
	if len(b.runs) == 0 {
		close(b.done)
	}
	go func() {
		for _, r := range b.runs {
			select {
			case d.slots <- struct{}{}:
			case <-b.over:
				return
			}
			r.mu.Lock()
			start := !r.dropped
			r.started = start
			r.mu.Unlock()
			if !start {
				<-d.slots
				return
			}
			d.wg.Go(func() {
				defer func() { <-d.slots }()
				d.send(ctx, b, r)
			})
		}
	}()
	return b
}

// wait waits for a batch's sends, at most BatchWait, and returns its
// outcome. A run still sending then is detached: its user is held, on
// every instance, for as long as its send may take, and it settles on its
// own when it ends. A run not started yet is left for a later batch.
func (d *Dispatcher) wait(ctx context.Context, b *batch) userattrs.Outcome {
	timer := time.NewTimer(d.cfg.BatchWait)
	defer timer.Stop()
	select {
	case <-b.done:
	case <-timer.C:
	case <-ctx.Done():
	}
	close(b.over)
	var out userattrs.Outcome
	for _, r := range b.runs {
		r.mu.Lock()
		switch {
		case !r.started:
			r.dropped = true
		case r.ended:
			out.Add(r.out)
		default:
			r.detached = true
			out.Add(r.out)
			r.out = userattrs.Outcome{}
			out.Holds = append(out.Holds, userattrs.Hold{User: r.user, For: d.sendBound(),
				Attempts: r.retry.Attempts, Since: r.retry.Since})
			d.mu.Lock()
			d.busy[r.user] = true
			d.mu.Unlock()
		}
		r.mu.Unlock()
	}
	return out
}

// sendBound is the longest a detached run may still send: one event to
// every sink, and a margin for settling.
func (d *Dispatcher) sendBound() time.Duration {
	return d.cfg.SendTimeout*time.Duration(len(d.cfg.Sinks)) + 5*time.Second
}

// send sends a run's events in order until one fails, or until the run is
// detached, after the event under way. A detached run settles its outcome
// once its batch's is applied, and ends its user's hold unless it failed.
func (d *Dispatcher) send(ctx context.Context, b *batch, r *run) {
	defer b.end()
	for _, e := range r.events {
		err := d.deliver(ctx, e)
		r.mu.Lock()
		switch {
		case err == nil:
			r.out.Delivered = append(r.out.Delivered, e.Seq)
			if r.retrying {
				r.out.Released = append(r.out.Released, r.user)
				r.retrying, r.retry = false, userattrs.Retry{}
			}
		case ctx.Err() == nil:
			d.failed(r, e, err)
		}
		r.ended = err != nil || r.detached
		ended, detached := r.ended, r.detached
		r.mu.Unlock()
		if ended {
			if detached {
				d.settle(ctx, b, r)
			}
			return
		}
	}
	r.mu.Lock()
	r.ended = true
	detached := r.detached
	r.mu.Unlock()
	if detached {
		d.settle(ctx, b, r)
	}
}

// settle applies a detached run's outcome after its batch's.
func (d *Dispatcher) settle(ctx context.Context, b *batch, r *run) {
	<-b.applied
	out := r.out
	if len(out.Holds) == 0 {
		out.Released = append(out.Released, r.user)
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.SendTimeout)
	defer cancel()
	if err := d.outbox.Settle(sctx, out); err != nil {
		// Its delivered events go out again once the hold ends: at
		// least once.
		d.cfg.Logger.Warn("events: a slow send's outcome cannot be saved", "error", err.Error())
	}
	d.mu.Lock()
	delete(d.busy, r.user)
	d.mu.Unlock()
}

// failed notes that e, its run's next event, failed: its user is held for
// a backoff, or, past the parking bounds, the event is parked and the
// user's later events go on.
func (d *Dispatcher) failed(r *run, e userattrs.Record, err error) {
	attempts, since := r.retry.Attempts+1, r.retry.Since
	if !r.retrying || since.IsZero() {
		since = time.Now()
	}
	park := (d.cfg.ParkAttempts > 0 && attempts >= d.cfg.ParkAttempts) ||
		(d.cfg.ParkAge > 0 && time.Since(since) >= d.cfg.ParkAge)
	if !park {
		r.out.Holds = append(r.out.Holds, userattrs.Hold{User: r.user, For: d.backoff(attempts), Attempts: attempts, Since: since})
		r.retry, r.retrying = userattrs.Retry{Attempts: attempts, Since: since}, true
		return
	}
	reason := err.Error()
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	r.out.Parked = append(r.out.Parked, userattrs.Parking{Seq: e.Seq, Attempts: attempts, Reason: reason})
	r.out.Released = append(r.out.Released, r.user)
	r.retry, r.retrying = userattrs.Retry{}, false
	d.parkings.Inc()
	d.cfg.Logger.Error("events: an event failed too long and is parked; the admin API sends it again",
		"event", e.ID, "attempts", attempts, "failing_since", since.UTC().Format(time.RFC3339), "error", reason)
}

// maxReason bounds the reason a parked event keeps.
const maxReason = 500

// backoff is the wait before a user's next attempt after attempts failed:
// RetryFirst doubling up to RetryMax, each between half and one and a half
// of that.
func (d *Dispatcher) backoff(attempts int) time.Duration {
	wait := d.cfg.RetryMax
	if attempts < 32 {
		wait = min(d.cfg.RetryFirst<<(attempts-1), d.cfg.RetryMax)
	}
	return time.Duration(float64(wait) * (0.5 + rand.Float64()))
}

// deliver sends one event to every sink, and says why when one did not
// take it.
func (d *Dispatcher) deliver(ctx context.Context, rec userattrs.Record) (err error) {
	ctx, end := deliverySpan(ctx, &rec)
	defer func() { end(err) }()
	e, err := Encode(d.cfg.Source, rec)
	if err != nil {
		d.cfg.Logger.Error("events: a record does not encode", "event", rec.ID, "error", err.Error())
		return fmt.Errorf("the event does not encode: %w", err)
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
			return fmt.Errorf("%s: %w", s.Name(), err)
		}
		d.deliveries.WithLabelValues(s.Name(), "delivered").Inc()
	}
	return nil
}

// Deliveries is the counter of deliveries to sink with result (delivered,
// failed).
func (d *Dispatcher) Deliveries(sink, result string) prometheus.Counter {
	return d.deliveries.WithLabelValues(sink, result)
}

// Parkings is the counter of events this dispatcher parked.
func (d *Dispatcher) Parkings() prometheus.Counter { return d.parkings }

// watch keeps the outbox gauges, and whether the outbox is past its
// bound, current.
func (d *Dispatcher) watch(ctx context.Context) {
	for {
		stats, err := d.outbox.OutboxStats(ctx)
		if err == nil {
			d.depth.Set(float64(stats.Depth))
			d.parked.Set(float64(stats.Parked))
			age := 0.0
			if !stats.Oldest.IsZero() {
				age = max(time.Since(stats.Oldest).Seconds(), 0)
			}
			d.oldest.Set(age)
			past := 0
			if d.cfg.MaxDepth > 0 && stats.Depth >= d.cfg.MaxDepth {
				past = stats.Depth
			}
			if d.pastBound.Swap(int64(past)) == 0 && past > 0 {
				d.cfg.Logger.Error("events: the outbox is past its bound; changes are refused until the sinks take its events",
					"depth", stats.Depth, "bound", d.cfg.MaxDepth)
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
