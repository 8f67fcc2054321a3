// Package events delivers change events: a dispatcher takes them from a
// store's transactional outbox and sends them, as CloudEvents 1.0 in JSON,
// to every sink (NATS JetStream, signed webhooks), at least once and in
// each user's order.
package events

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"time"

	cloudevents "github.com/cloudevents/sdk-go/v2/event"

	"github.com/userattrs/userattrs"
)

// Type is the CloudEvents type of a change event.
const Type = "io.userattrs.attributes.changed.v1"

// ErasedType is the CloudEvents type of the event of an erasure: a
// receiver deletes everything it holds of the event's subject.
const ErasedType = "io.userattrs.user.erased.v1"

// erasure is the data of an erasure's event: who asked for it, no value.
type erasure struct {
	ID        string          `json:"id"`
	Time      time.Time       `json:"time"`
	User      string          `json:"user"`
	Actor     userattrs.Actor `json:"actor"`
	ClientID  string          `json:"clientId"`
	RequestID string          `json:"requestId"`
}

// DefaultSource is the CloudEvents source when none is configured.
const DefaultSource = "/userattrs"

// Event is one change event ready to send: its id, its user, and its
// encoded CloudEvent.
type Event struct {
	ID   string
	User string
	Body []byte // application/cloudevents+json
	// TraceParent is the W3C traceparent of the delivery, for the
	// transport's header; empty when the change was not traced.
	TraceParent string
}

// Encode turns a change's record into its CloudEvent: id, source, type,
// time, subject (the user) and the record as data; an erasure's record
// into an event of ErasedType.
func Encode(source string, rec userattrs.Record) (Event, error) {
	e := cloudevents.New()
	e.SetID(rec.ID)
	e.SetSource(source)
	e.SetType(Type)
	var data any = rec
	if rec.Erased {
		e.SetType(ErasedType)
		data = erasure{ID: rec.ID, Time: rec.Time, User: rec.User, Actor: rec.Actor, ClientID: rec.ClientID, RequestID: rec.RequestID}
	}
	e.SetTime(rec.Time)
	e.SetSubject(rec.User)
	traceParent := rec.TraceParent
	if traceParent != "" {
		// The distributed-tracing extension of CloudEvents; the data stays
		// the record as the history shows it.
		e.SetExtension("traceparent", traceParent)
		rec.TraceParent = ""
		if !rec.Erased {
			data = rec
		}
	}
	if err := e.SetData("application/json", data); err != nil {
		return Event{}, err
	}
	if err := e.Validate(); err != nil {
		return Event{}, err
	}
	body, err := json.Marshal(e)
	return Event{ID: rec.ID, User: rec.User, Body: body, TraceParent: traceParent}, err
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

// ErrRefused is a sink's answer that it did not take an event.
var ErrRefused = errors.New("the sink refused the event")

func refused(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrRefused}, args...)...)
}

// SinkKind is one row of the program's table of sinks: a sink plugs in
// with one file that returns its row, and the row in the table.
type SinkKind struct {
	// Name names the sink in logs.
	Name string
	// Flags registers the sink's flags and returns its configuration,
	// read once they are parsed.
	Flags func(fs *flag.FlagSet) SinkConfig
}

// SinkConfig is a sink's configuration.
type SinkConfig interface {
	// On reports whether the flags ask for the sink.
	On() bool
	// Check refuses, at start, a configuration the sink could not deliver
	// with; it is called only when On.
	Check() error
	// Open returns the sink, ready to send.
	Open() (Sink, error)
}
