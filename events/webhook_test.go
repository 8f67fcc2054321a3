package events_test

import (
	"context"
	"net"
	"strings"
	"testing"

	"github.com/userattrs/userattrs/events"
)

// A webhook's URL may carry the receiver's token: a failed delivery's
// error, which the dispatcher logs, leaves it out.
func TestWebhookErrorsLeaveTheURLOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	w := events.NewWebhook("http://"+addr+"/hook?token=receivers-secret", []byte("0123456789abcdef"))
	err = w.Send(context.Background(), events.Event{ID: "e1", User: "u", Body: []byte("{}")})
	if err == nil || strings.Contains(err.Error(), "receivers-secret") || strings.Contains(err.Error(), "/hook") {
		t.Fatalf("Send to a closed port: %v", err)
	}
}
