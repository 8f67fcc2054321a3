package events_test

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/events"
)

// An event is a CloudEvent 1.0 in JSON whose id is the record's and whose
// data is the record.
func TestEncode(t *testing.T) {
	rec := userattrs.Record{ID: "c1", Time: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), User: "alice",
		Actor: userattrs.Actor{Type: "user", ID: "alice"}, ClientID: "app", RequestID: "r1",
		Set: userattrs.Attributes{"a": {"1"}}, Removed: []string{"b"}}
	e, err := events.Encode("/userattrs", rec)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(e.Body, &got); err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(rec)
	var want any
	json.Unmarshal(raw, &want)
	if got["specversion"] != "1.0" || got["id"] != "c1" || got["source"] != "/userattrs" || got["type"] != events.Type ||
		got["subject"] != "alice" || got["time"] != "2026-01-02T03:04:05Z" || got["datacontenttype"] != "application/json" ||
		!reflect.DeepEqual(got["data"], want) || e.ID != "c1" || e.User != "alice" {
		t.Fatalf("event %s", e.Body)
	}
}

// An erasure's event is of its own type, and its data says who asked for
// it: no value, nor an empty set a receiver might merge.
func TestEncodeErasure(t *testing.T) {
	rec := userattrs.NewErasure("alice", userattrs.Origin{Actor: "ops", ServiceAccount: true, ClientID: "backend", RequestID: "r2",
		TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"})
	rec.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	e, err := events.Encode("/userattrs", rec)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(e.Body, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": rec.ID, "time": "2026-01-02T03:04:05Z", "user": "alice",
		"actor": map[string]any{"type": "service-account", "id": "ops"}, "clientId": "backend", "requestId": "r2"}
	if got["type"] != events.ErasedType || got["subject"] != "alice" || !reflect.DeepEqual(got["data"], want) ||
		got["traceparent"] != rec.TraceParent {
		t.Fatalf("event %s", e.Body)
	}
}

// A user id is the subject's last token as it is when it is one safe
// token, and encoded otherwise: no id adds tokens or wildcards.
func TestSubject(t *testing.T) {
	for user, want := range map[string]string{
		"3f2c-aa_01": "p.3f2c-aa_01",
		"a.b":        "p.~YS5i",
		">":          "p.~Pg",
		"a b*":       "p.~YSBiKg",
		"":           "p.~",
	} {
		if got := events.Subject("p", user); got != want {
			t.Errorf("Subject(%q) = %q, want %q", user, got, want)
		}
	}
}
