package events_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/userattrs/userattrs/events"
)

// Two secrets, as during a rotation.
const (
	oldSecret = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="
	newSecret = "whsec_ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="
)

func newWebhook(t *testing.T, url string) *events.Webhook {
	t.Helper()
	signers, err := events.ParseSecrets(oldSecret + "," + newSecret)
	if err != nil {
		t.Fatal(err)
	}
	return events.NewWebhook(url, signers)
}

// A webhook's URL may carry the receiver's token: a failed delivery's
// error, which the dispatcher logs, leaves it out.
func TestWebhookErrorsLeaveTheURLOut(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	w := newWebhook(t, "http://"+addr+"/hook?token=receivers-secret")
	err = w.Send(context.Background(), events.Event{ID: "e1", User: "u", Body: []byte("{}")})
	if err == nil || strings.Contains(err.Error(), "receivers-secret") || strings.Contains(err.Error(), "/hook") {
		t.Fatalf("Send to a closed port: %v", err)
	}
}

// Every delivery verifies with the official Standard Webhooks library,
// under either secret of a rotation; a delivery whose body or id was
// changed, or that is replayed long after, does not.
func TestWebhookStandardSignatures(t *testing.T) {
	var got struct {
		body   []byte
		header http.Header
	}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		got.header = r.Header.Clone()
		got.body = make([]byte, r.ContentLength)
		r.Body.Read(got.body)
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	body := []byte(`{"specversion":"1.0","id":"evt-1"}`)
	if err := newWebhook(t, srv.URL).Send(context.Background(), events.Event{ID: "evt-1", User: "u", Body: body}); err != nil {
		t.Fatal(err)
	}
	if got.header.Get("webhook-id") != "evt-1" || len(strings.Fields(got.header.Get("webhook-signature"))) != 2 {
		t.Fatalf("headers %v", got.header)
	}
	for _, secret := range []string{oldSecret, newSecret} {
		verifier, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifier.Verify(got.body, got.header); err != nil {
			t.Errorf("the official verifier refuses the delivery: %v", err)
		}
		if err := verifier.Verify(append([]byte(" "), got.body...), got.header); err == nil {
			t.Error("a changed body verifies")
		}
		other := got.header.Clone()
		other.Set("webhook-id", "evt-2")
		if err := verifier.Verify(got.body, other); err == nil {
			t.Error("the signature of one event verifies for another id")
		}
		old := got.header.Clone()
		old.Set("webhook-timestamp", "1700000000")
		if err := verifier.Verify(got.body, old); err == nil {
			t.Error("a delivery replayed long after verifies")
		}
	}
	if stranger, _ := standardwebhooks.NewWebhook("whsec_c3RyYW5nZXItc3RyYW5nZXItc3RyYW5nZXI="); stranger.Verify(got.body, got.header) == nil {
		t.Error("a secret the service does not hold verifies")
	}
}

// A redirect is a failed delivery, never followed: followed, it turns the
// POST into a bodiless GET that a login page answers 200. The error says
// where it pointed, without its query.
func TestWebhookNeverFollowsRedirects(t *testing.T) {
	var followed atomic.Bool
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/login" {
			followed.Store(true)
			return
		}
		http.Redirect(rw, r, "/login?session=secret-session", http.StatusFound)
	}))
	defer srv.Close()
	err := newWebhook(t, srv.URL+"/hook").Send(context.Background(), events.Event{ID: "e1", User: "u", Body: []byte("{}")})
	if err == nil || !strings.Contains(err.Error(), "302") || !strings.Contains(err.Error(), `"/login"`) ||
		strings.Contains(err.Error(), "secret-session") {
		t.Fatalf("Send to a redirect: %v", err)
	}
	if followed.Load() {
		t.Fatal("the redirect was followed")
	}
}

// Secrets are whsec_ and the base64 of at least 24 bytes.
func TestParseSecrets(t *testing.T) {
	for _, bad := range []string{"", "a-plain-secret-of-many-bytes", "whsec_not base64!", "whsec_c2hvcnQ=",
		oldSecret + ",", oldSecret + ",a-plain-secret-of-many-bytes"} {
		if _, err := events.ParseSecrets(bad); err == nil {
			t.Errorf("ParseSecrets(%q) accepted", bad)
		} else if strings.Contains(err.Error(), "plain") || strings.Contains(err.Error(), "c2hvcnQ") {
			t.Errorf("the error quotes the secret: %v", err)
		}
	}
	if signers, err := events.ParseSecrets(oldSecret + ", " + newSecret); err != nil || len(signers) != 2 {
		t.Fatalf("two secrets: %d, %v", len(signers), err)
	}
}
