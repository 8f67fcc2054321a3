package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/events"
)

// changesConfig is what serve does with the record of each change: how
// long the history keeps it, and where its event goes.
type changesConfig struct {
	historyRetention time.Duration
	sinks            []sinkConfig
	outboxMax        int
	parkAttempts     int
	parkAfter        time.Duration
	source           string
}

// sinkKinds is the program's table of event sinks: a sink plugs in with
// its package's row here.
var sinkKinds = []events.SinkKind{events.NATSKind(), events.WebhookKind()}

type sinkConfig struct {
	name string
	events.SinkConfig
}

func (c *changesConfig) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.historyRetention, "history-retention", 400*24*time.Hour,
		"how long the history keeps a change; older records are pruned in the background (0: kept for ever)")
	for _, k := range sinkKinds {
		c.sinks = append(c.sinks, sinkConfig{k.Name, k.Flags(fs)})
	}
	fs.StringVar(&c.source, "events-source", events.DefaultSource, "the CloudEvents source of change events")
	fs.Func("events-outbox-max", fmt.Sprintf("most change events the outbox holds undelivered; past it changes are refused (503 outbox-full) "+
		"and readiness fails, until the sinks take them (default %d; 0: no bound)", defaultOutboxMax), func(s string) error {
		n, err := strconv.Atoi(s)
		c.outboxMax = n
		return wholeNumber(n, err)
	})
	c.outboxMax = defaultOutboxMax
	fs.IntVar(&c.parkAttempts, "events-park-attempts", 0,
		"park a change event after this many failed attempts (0: only --events-park-after parks); a parked event leaves the outbox "+
			"until the admin API sends it again, and its user's later events go on")
	fs.DurationVar(&c.parkAfter, "events-park-after", 24*time.Hour,
		"park a change event that has failed for this long since its first failure (0: never by age)")
}

// defaultOutboxMax bounds the outbox unless told otherwise: about 230 MB
// of events on SQLite, hours of a receiver's outage at a busy instance's
// rate.
const defaultOutboxMax = 1_000_000

// eventsOn reports whether any sink is configured.
func (c *changesConfig) eventsOn() bool {
	return slices.ContainsFunc(c.sinks, func(s sinkConfig) bool { return s.On() })
}

// check refuses a configuration that cannot deliver what it asks for.
func (c *changesConfig) check() error {
	if c.historyRetention < 0 {
		return errors.New("--history-retention must not be negative")
	}
	if c.parkAttempts < 0 || c.parkAfter < 0 {
		return errors.New("--events-park-attempts and --events-park-after must not be negative")
	}
	// Checked as every event will be, so that a source no event could
	// carry stops the program here rather than every delivery later.
	if _, err := events.Encode(c.source, userattrs.Record{ID: "check", User: "check", Time: time.Now()}); err != nil {
		return errors.New("--events-source must be a non-empty URI reference, as a CloudEvent's source is (such as /userattrs)")
	}
	for _, s := range c.sinks {
		if s.On() {
			if err := s.Check(); err != nil {
				return err
			}
		}
	}
	return nil
}

// changes is what start runs: wait waits for it to stop; with events on,
// the dispatcher, whose Admit and Ready serve the outbox's bound.
type changes struct {
	wait       func()
	dispatcher *events.Dispatcher // nil with events off
	outbox     userattrs.Outbox   // nil with events off
}

// start runs, until ctx ends, the history's pruning and, with events on,
// the dispatcher of the store's outbox. A store that cannot deliver
// events starts neither.
func (c *changesConfig) start(ctx context.Context, st userattrs.Store, storeName string, logger *slog.Logger, reg prometheus.Registerer) (changes, error) {
	caps := st.Capabilities()
	var dispatcher *events.Dispatcher
	var outbox userattrs.Outbox
	if c.eventsOn() {
		var ok bool
		outbox, ok = userattrs.As[userattrs.Outbox](st)
		if !ok || !caps.Outbox {
			return changes{}, fmt.Errorf("the %s store cannot deliver change events: it has no transactional outbox "+
				"(events are delivered from the SQLite, PostgreSQL and memory stores); remove --events-nats-url and --events-webhook-url", storeName)
		}
		var sinks []events.Sink
		var names []string
		for _, sc := range c.sinks {
			if !sc.On() {
				continue
			}
			sink, err := sc.Open()
			if err != nil {
				for _, s := range sinks {
					s.Close()
				}
				return changes{}, fmt.Errorf("events: %w", err)
			}
			sinks, names = append(sinks, sink), append(names, sc.name)
		}
		parkAge := c.parkAfter
		if parkAge == 0 {
			parkAge = -1 // never by age
		}
		dispatcher = events.NewDispatcher(outbox, events.Config{Source: c.source, Sinks: sinks, Logger: logger, Metrics: reg,
			MaxDepth: c.outboxMax, ParkAttempts: c.parkAttempts, ParkAge: parkAge})
		logger.Info("change events on", "sinks", strings.Join(names, ","))
	}
	var running sync.WaitGroup
	if h, ok := userattrs.As[userattrs.History](st); ok && c.historyRetention > 0 {
		running.Go(func() { prune(ctx, h, c.historyRetention, logger) })
	}
	if dispatcher != nil {
		running.Go(func() { dispatcher.Run(ctx) })
	}
	return changes{wait: running.Wait, dispatcher: dispatcher, outbox: outbox}, nil
}

// prune removes history records older than retention now and then every
// hour, until ctx ends.
func prune(ctx context.Context, h userattrs.History, retention time.Duration, logger *slog.Logger) {
	for {
		removed, err := pruneOnce(ctx, h, time.Now().Add(-retention), pruneStep)
		if err != nil && ctx.Err() == nil {
			logger.Warn("history: pruning failed; trying again later", "error", err.Error())
		}
		if removed > 0 {
			logger.Info("history: pruned records past retention", "removed", removed)
		}
		if !sleep(ctx, time.Hour) {
			return
		}
	}
}

// pruneStep is how many records one pruning transaction removes: small
// enough that merges never wait long for it.
const pruneStep = 1000

// pruneOnce removes every record older than before, step records at a
// time with a pause between, and returns how many it removed.
func pruneOnce(ctx context.Context, h userattrs.History, before time.Time, step int) (int, error) {
	removed := 0
	for {
		n, err := h.PruneHistory(ctx, before, step)
		removed += n
		if err != nil || n < step {
			return removed, err
		}
		if !sleep(ctx, 50*time.Millisecond) {
			return removed, ctx.Err()
		}
	}
}

// sleep waits d, or until ctx ends: false then.
func sleep(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
