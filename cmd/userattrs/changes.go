package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/events"
)

// changesConfig is what serve does with the record of each change: how
// long the history keeps it, and where its event goes.
type changesConfig struct {
	historyRetention time.Duration
	natsURL          string
	natsSubject      string
	natsMaxAge       time.Duration
	outboxMax        int
	parkAttempts     int
	parkAfter        time.Duration
	webhookURL       string
	webhookSecret    string
	webhookSigners   []*standardwebhooks.Webhook // read from webhookSecret by check
	source           string
}

func (c *changesConfig) flags(fs *flag.FlagSet) {
	fs.DurationVar(&c.historyRetention, "history-retention", 400*24*time.Hour,
		"how long the history keeps a change; older records are pruned in the background (0: kept for ever)")
	fs.StringVar(&c.natsURL, "events-nats-url", "", "publish change events to NATS JetStream at this URL (nats://host:4222)")
	fs.StringVar(&c.natsSubject, "events-nats-subject", events.DefaultSubject,
		"subject prefix of change events; the user id is the last token (a stream "+events.DefaultStream+" is created for PREFIX.> if none takes it)")
	fs.DurationVar(&c.natsMaxAge, "events-nats-max-age", events.DefaultMaxAge,
		"how long the stream the service creates keeps an event (JetStream MaxAge); an operator's own stream keeps its limits")
	fs.StringVar(&c.webhookURL, "events-webhook-url", "", "POST change events to this URL, signed with --events-webhook-secret")
	fs.StringVar(&c.webhookSecret, "events-webhook-secret", "",
		"comma-separated Standard Webhooks secrets (whsec_ and the base64 of at least 24 random bytes); every delivery is signed "+
			"with each, so that a secret can be rotated (prefer USERATTRS_EVENTS_WEBHOOK_SECRET)")
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
func (c *changesConfig) eventsOn() bool { return c.natsURL != "" || c.webhookURL != "" }

// check refuses a configuration that cannot deliver what it asks for.
func (c *changesConfig) check() error {
	if c.historyRetention < 0 {
		return errors.New("--history-retention must not be negative")
	}
	if c.parkAttempts < 0 || c.parkAfter < 0 {
		return errors.New("--events-park-attempts and --events-park-after must not be negative")
	}
	if c.natsMaxAge <= 0 {
		return errors.New("--events-nats-max-age must be positive: a stream without a bound fills the broker's disk")
	}
	// Checked as every event will be, so that a source no event could
	// carry stops the program here rather than every delivery later.
	if _, err := events.Encode(c.source, userattrs.Record{ID: "check", User: "check", Time: time.Now()}); err != nil {
		return errors.New("--events-source must be a non-empty URI reference, as a CloudEvent's source is (such as /userattrs)")
	}
	if c.webhookURL != "" {
		u, err := url.Parse(c.webhookURL)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return errors.New("--events-webhook-url must be an http or https URL")
		}
		if c.webhookSecret == "" {
			return errors.New("--events-webhook-url needs --events-webhook-secret, so that receivers can check each event")
		}
		signers, err := events.ParseSecrets(c.webhookSecret)
		if err != nil {
			return fmt.Errorf("--events-webhook-secret: %w", err)
		}
		c.webhookSigners = signers
	}
	if c.natsURL != "" && (c.natsSubject == "" || strings.ContainsAny(c.natsSubject, " *>")) {
		return errors.New("--events-nats-subject must be a subject prefix without spaces or wildcards")
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
				"(events are delivered from the SQLite and PostgreSQL stores); remove --events-nats-url and --events-webhook-url", storeName)
		}
		var sinks []events.Sink
		if c.natsURL != "" {
			n, err := events.NewNATS(c.natsURL, c.natsSubject, c.natsMaxAge)
			if err != nil {
				return changes{}, fmt.Errorf("events: NATS: %w", err)
			}
			sinks = append(sinks, n)
		}
		if c.webhookURL != "" {
			sinks = append(sinks, events.NewWebhook(c.webhookURL, c.webhookSigners))
		}
		parkAge := c.parkAfter
		if parkAge == 0 {
			parkAge = -1 // never by age
		}
		dispatcher = events.NewDispatcher(outbox, events.Config{Source: c.source, Sinks: sinks, Logger: logger, Metrics: reg,
			MaxDepth: c.outboxMax, ParkAttempts: c.parkAttempts, ParkAge: parkAge})
		logger.Info("change events on", "nats", c.natsURL != "", "webhook", c.webhookURL != "")
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

// history prints the history of one user, newest first, a JSON record per
// line: the operator's view of what the admin API's history route serves,
// without the policy (every attribute, hidden ones included).
func history(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("userattrs history", flag.ContinueOnError)
	var cfg storeConfig
	cfg.flags(fs)
	user := fs.String("user", "", "the user whose changes are listed (required)")
	limit := fs.Int("limit", 100, "most changes listed")
	key := fs.String("key", "", "only changes that set or removed this attribute")
	if _, err := parseFlags(fs, args, getenv, stdout); err != nil {
		return err
	}
	if *user == "" || *limit < 1 {
		return usageError{errors.New("--user is required, and --limit must be at least 1")}
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, kind, err := cfg.open(ctx, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	h, ok := userattrs.As[userattrs.History](st)
	if !ok {
		return fmt.Errorf("the %s store keeps no history of changes", kind.Name)
	}
	if !st.Capabilities().Durable {
		// A store this command opens afresh holds nothing.
		return fmt.Errorf("the %s store keeps its history in the memory of the process that serves it; "+
			"read it there, through the admin API", kind.Name)
	}
	out := json.NewEncoder(stdout)
	var before int64
	for left := *limit; left > 0; {
		page := min(left, 500)
		records, err := h.History(ctx, *user, userattrs.HistoryQuery{Before: before, Key: *key, Limit: page})
		if err != nil {
			return err
		}
		for _, r := range records {
			if err := out.Encode(r); err != nil {
				return err
			}
		}
		if len(records) < page {
			return nil
		}
		left -= len(records)
		before = records[len(records)-1].Seq
	}
	return nil
}
