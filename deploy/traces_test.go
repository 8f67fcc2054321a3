package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/userattrs/userattrs/internal/testutil"
)

// span is what the collector's debug exporter printed of one span.
type span struct {
	TraceID, ParentID, ID, Name, Kind string
	LinkedTraces                      []string
	Attributes                        map[string]string
}

var spanField = regexp.MustCompile(`^\s+(Trace ID|Parent ID|ID|Name|Kind)\s+: ?(.*)$`)
var linkField = regexp.MustCompile(`^\s+-> Trace ID: (\S+)`)
var attributeField = regexp.MustCompile(`^\s+-> ([a-z_.]+): \w+\((.*)\)$`)

// parseSpans reads the debug exporter's detailed output.
func parseSpans(out string) []span {
	var spans []span
	var cur *span
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, "Span #") {
			spans = append(spans, span{Attributes: map[string]string{}})
			cur = &spans[len(spans)-1]
			continue
		}
		if cur == nil {
			continue
		}
		if m := spanField.FindStringSubmatch(line); m != nil {
			v := strings.TrimSpace(m[2])
			switch m[1] {
			case "Trace ID":
				cur.TraceID = v
			case "Parent ID":
				cur.ParentID = v
			case "ID":
				cur.ID = v
			case "Name":
				cur.Name = v
			case "Kind":
				cur.Kind = v
			}
		} else if m := linkField.FindStringSubmatch(line); m != nil {
			cur.LinkedTraces = append(cur.LinkedTraces, m[1])
		} else if m := attributeField.FindStringSubmatch(line); m != nil {
			cur.Attributes[m[1]] = m[2]
		}
	}
	return spans
}

// startCollector runs the OpenTelemetry Collector of ops-tools.sh on
// loopback, with the OTLP/HTTP receiver and the debug exporter, and returns
// its endpoint and its output.
func startCollector(t *testing.T) (string, *testutil.SyncBuffer) {
	t.Helper()
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(t.TempDir(), "otelcol.yaml")
	writeFile(t, config, fmt.Sprintf(`receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
exporters:
  debug:
    verbosity: detailed
service:
  telemetry:
    metrics:
      level: none
  pipelines:
    traces:
      receivers: [otlp]
      exporters: [debug]
`, port))
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(tools(t)["OPS_OTELCOL"], "--config", config)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	})
	for start := time.Now(); !strings.Contains(out.String(), "Everything is ready"); time.Sleep(50 * time.Millisecond) {
		if time.Since(start) > 30*time.Second {
			t.Fatalf("the collector did not start:\n%s", out.String())
		}
	}
	return fmt.Sprintf("http://127.0.0.1:%d", port), out
}

// waitSpans waits until the collector has received spans of trace that
// include every name.
func waitSpans(t *testing.T, out *testutil.SyncBuffer, match func(span) bool, names ...string) map[string]span {
	t.Helper()
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(100 * time.Millisecond) {
		found := map[string]span{}
		for _, s := range parseSpans(out.String()) {
			if match(s) {
				found[s.Name] = s
			}
		}
		all := true
		for _, n := range names {
			_, ok := found[n]
			all = all && ok
		}
		if all {
			return found
		}
	}
	t.Fatalf("the collector never received spans %v:\n%s", names, out.String())
	return nil
}

// A traced PUT, end to end through a real OpenTelemetry Collector: its
// request span, its store operation and the delivery of its change event,
// parent and children; the webhook and the CloudEvent carry the trace on,
// and the request log line names it. An incoming traceparent is the parent
// only with --trust-incoming-trace, and otherwise only a link.
func TestTraces(t *testing.T) {
	endpoint, collected := startCollector(t)
	type delivery struct {
		header http.Header
		body   []byte
	}
	var mu sync.Mutex
	var deliveries []delivery
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		deliveries = append(deliveries, delivery{r.Header.Clone(), body})
		mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	env := []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + endpoint, "OTEL_BSP_SCHEDULE_DELAY=100", "OTEL_SERVICE_NAME=userattrs-traces-test"}
	events := []string{"--events-webhook-url", hook.URL, "--events-webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}

	const incomingTrace, incomingSpan = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	traceparent := "00-" + incomingTrace + "-" + incomingSpan + "-01"

	t.Run("trusted", func(t *testing.T) {
		natsURL, published := natsSubscriber(t, "userattrs.attributes.>")
		s := startService(t, env, append(events, "--trust-incoming-trace", "--events-nats-url", natsURL)...)
		tok := s.token(t, "traced-user")
		if status, body := do(t, "PUT", s.url+"/user/2025-1/attributes", tok, `{"tos_accepted":"true"}`, "traceparent", traceparent); status != http.StatusNoContent {
			t.Fatalf("PUT: %d %s", status, body)
		}
		spans := waitSpans(t, collected, func(s span) bool { return s.TraceID == incomingTrace },
			"PUT /user/{version}/attributes", "store update", "outbox delivery")
		request := spans["PUT /user/{version}/attributes"]
		if request.ParentID != incomingSpan || request.Kind != "Server" {
			t.Errorf("the request span: parent %q kind %q, want the incoming %s, Server", request.ParentID, request.Kind, incomingSpan)
		}
		store := spans["store update"]
		if store.ParentID != request.ID {
			t.Errorf("the store span's parent is %q, want the request's %s", store.ParentID, request.ID)
		}
		// The batch the merge rode in: this PUT alone.
		if a := store.Attributes; a["userattrs.store"] != "sqlite" || a["userattrs.store.batch_size"] != "1" {
			t.Errorf("the store span's attributes: %v", a)
		}
		outbox := spans["outbox delivery"]
		if outbox.ParentID != request.ID || outbox.Kind != "Producer" {
			t.Errorf("the delivery span: parent %q kind %q, want the request's %s, Producer", outbox.ParentID, outbox.Kind, request.ID)
		}

		// The webhook: its traceparent header and the CloudEvent's
		// extension name the delivery span; the record stays as the history
		// has it.
		mu.Lock()
		got := deliveries
		mu.Unlock()
		if len(got) != 1 {
			t.Fatalf("%d webhook deliveries, want 1", len(got))
		}
		want := "00-" + incomingTrace + "-" + outbox.ID + "-01"
		if h := got[0].header.Get("traceparent"); h != want {
			t.Errorf("the webhook's traceparent is %q, want %q", h, want)
		}
		var event struct {
			TraceParent string         `json:"traceparent"`
			Data        map[string]any `json:"data"`
		}
		if err := json.Unmarshal(got[0].body, &event); err != nil {
			t.Fatal(err)
		}
		if _, leaked := event.Data["traceparent"]; event.TraceParent != want || leaked {
			t.Errorf("the CloudEvent's traceparent is %q (want %q), and the record carries one: %v", event.TraceParent, want, leaked)
		}
		select {
		case msg := <-published:
			if h := msg.Header.Get("traceparent"); h != want {
				t.Errorf("the NATS message's traceparent is %q, want %q", h, want)
			}
		case <-time.After(10 * time.Second):
			t.Error("no change event on NATS")
		}
		if !strings.Contains(s.log.String(), `"trace_id":"`+incomingTrace+`"`) {
			t.Errorf("the request log line does not name the trace:\n%s", s.log.String())
		}
	})

	t.Run("untrusted", func(t *testing.T) {
		s := startService(t, env)
		tok := s.token(t, "traced-user")
		if status, body := do(t, "PUT", s.url+"/user/2025-1/attributes", tok, `{"tos_accepted":"false"}`, "traceparent", traceparent); status != http.StatusNoContent {
			t.Fatalf("PUT: %d %s", status, body)
		}
		linked := func(s span) bool { return len(s.LinkedTraces) == 1 && s.LinkedTraces[0] == incomingTrace }
		request := waitSpans(t, collected, linked, "PUT /user/{version}/attributes")["PUT /user/{version}/attributes"]
		if request.TraceID == incomingTrace || request.ParentID != "" {
			t.Errorf("an untrusted traceparent became the parent: trace %s parent %q", request.TraceID, request.ParentID)
		}
		store := waitSpans(t, collected, func(s span) bool { return s.TraceID == request.TraceID }, "store update")["store update"]
		if store.ParentID != request.ID {
			t.Errorf("the store span's parent is %q, want %s", store.ParentID, request.ID)
		}
	})
}

// natsSubscriber runs a nats-server with JetStream on loopback and
// subscribes to subject; it returns the server's URL and the messages.
func natsSubscriber(t *testing.T, subject string) (string, chan *nats.Msg) {
	t.Helper()
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	msgs := make(chan *nats.Msg, 16)
	if _, err := nc.ChanSubscribe(subject, msgs); err != nil {
		t.Fatal(err)
	}
	return srv.ClientURL(), msgs
}
