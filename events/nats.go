package events

import (
	"context"
	"encoding/base64"
	"errors"
	"flag"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultSubject is the prefix of the subjects events are published on;
// the user id is the last token.
const DefaultSubject = "userattrs.attributes"

// DefaultStream is the JetStream stream created for the subjects when no
// stream takes them yet.
const DefaultStream = "USERATTRS_EVENTS"

// NATSKind is the NATS JetStream sink's row in the table of sinks.
func NATSKind() SinkKind {
	return SinkKind{Name: "nats", Flags: func(fs *flag.FlagSet) SinkConfig {
		c := &natsConfig{}
		fs.StringVar(&c.url, "events-nats-url", "", "publish change events to NATS JetStream at this URL (nats://host:4222)")
		fs.StringVar(&c.subject, "events-nats-subject", DefaultSubject,
			"subject prefix of change events; the user id is the last token (a stream "+DefaultStream+" is created for PREFIX.> if none takes it)")
		fs.DurationVar(&c.maxAge, "events-nats-max-age", DefaultMaxAge,
			"how long the stream the service creates keeps an event (JetStream MaxAge); an operator's own stream keeps its limits")
		return c
	}}
}

type natsConfig struct {
	url, subject string
	maxAge       time.Duration
}

func (c *natsConfig) On() bool { return c.url != "" }

func (c *natsConfig) Check() error {
	if c.maxAge <= 0 {
		return errors.New("--events-nats-max-age must be positive: a stream without a bound fills the broker's disk")
	}
	if c.subject == "" || strings.ContainsAny(c.subject, " *>") {
		return errors.New("--events-nats-subject must be a subject prefix without spaces or wildcards")
	}
	return nil
}

func (c *natsConfig) Open() (Sink, error) {
	n, err := NewNATS(c.url, c.subject, c.maxAge)
	if err != nil {
		return nil, fmt.Errorf("NATS: %w", err)
	}
	return n, nil
}

// NATS publishes each event to JetStream, on the subject prefix.<user>,
// with the event id as the message id, so that JetStream drops a
// duplicate that arrives within its window.
type NATS struct {
	prefix string
	maxAge time.Duration // of the stream this sink creates
	conn   *nats.Conn
	js     jetstream.JetStream

	mu     sync.Mutex
	stream bool // a stream takes the subjects
}

// DefaultMaxAge is how long the stream this sink creates keeps an event.
const DefaultMaxAge = 7 * 24 * time.Hour

// NewNATS connects to url; it connects again by itself whenever the
// connection drops, and a server down at start is retried too. A stream it
// creates keeps events for maxAge.
func NewNATS(url, subject string, maxAge time.Duration) (*NATS, error) {
	conn, err := nats.Connect(url, nats.Name("userattrs"), nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1), nats.ReconnectWait(500*time.Millisecond))
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(conn)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &NATS{prefix: strings.TrimSuffix(subject, "."), maxAge: maxAge, conn: conn, js: js}, nil
}

func (n *NATS) Name() string { return "nats" }

// Subject is the subject of a user's events. A user id that is not one
// NATS token of safe characters (dots, wildcards, spaces) goes as "~" and
// its unpadded base64url.
func Subject(prefix, user string) string {
	safe := user != "" && !strings.ContainsFunc(user, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_')
	})
	if !safe {
		user = "~" + base64.RawURLEncoding.EncodeToString([]byte(user))
	}
	return prefix + "." + user
}

func (n *NATS) Send(ctx context.Context, e Event) error {
	msg := &nats.Msg{Subject: Subject(n.prefix, e.User), Data: e.Body, Header: nats.Header{}}
	msg.Header.Set("Content-Type", "application/cloudevents+json")
	if e.TraceParent != "" {
		msg.Header.Set("traceparent", e.TraceParent)
	}
	for attempt := 0; ; attempt++ {
		if err := n.ensureStream(ctx); err != nil {
			return err
		}
		_, err := n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(e.ID))
		if attempt > 0 || !(errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrNoResponders)) {
			return err
		}
		// No stream takes the subject any more (deleted while the service
		// ran): look for one again, and create it, once.
		n.mu.Lock()
		n.stream = false
		n.mu.Unlock()
	}
}

// ensureStream creates a stream for the subjects unless one takes them
// already: an operator's own stream is left as it is.
func (n *NATS) ensureStream(ctx context.Context) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stream {
		return nil
	}
	_, err := n.js.StreamNameBySubject(ctx, n.prefix+".x")
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// Bounded by age: events nobody consumed do not fill the
		// broker's disk.
		_, err = n.js.CreateStream(ctx, jetstream.StreamConfig{Name: DefaultStream, Subjects: []string{n.prefix + ".>"},
			Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute, MaxAge: n.maxAge, Discard: jetstream.DiscardOld})
	}
	if err == nil {
		n.stream = true
	}
	return err
}

func (n *NATS) Close() error {
	n.conn.Close()
	return nil
}
