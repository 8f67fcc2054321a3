package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/userattrs/userattrs"
	"github.com/userattrs/userattrs/events"
	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/internal/testutil"
	"github.com/userattrs/userattrs/reliability"
)

const webhookSecret = "whsec_YS13ZWJob29rLXNlY3JldC1vZi10aGUtdGVzdHM="

// natsServer is a real nats-server with JetStream, run in the test
// process, which a test can stop and start again on the same port and
// storage.
type natsServer struct {
	t    *testing.T
	opts *natsserver.Options
	srv  *natsserver.Server
	url  string
}

func startNATS(t *testing.T) *natsServer {
	port, err := testutil.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	n := &natsServer{t: t, url: fmt.Sprintf("nats://127.0.0.1:%d", port),
		opts: &natsserver.Options{Host: "127.0.0.1", Port: port, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true}}
	n.start()
	t.Cleanup(n.stop)
	return n
}

func (n *natsServer) start() {
	srv, err := natsserver.NewServer(n.opts)
	if err != nil {
		n.t.Fatal(err)
	}
	srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		n.t.Fatal("nats-server did not start")
	}
	n.srv = srv
}

func (n *natsServer) stop() {
	if n.srv != nil {
		n.srv.Shutdown()
		n.srv.WaitForShutdown()
		n.srv = nil
	}
}

// received is what a sink got: each delivery's event id and user, in the
// order they arrived, and each event's data.
type received struct {
	mu         sync.Mutex
	deliveries []delivery
	records    map[string]userattrs.Record
}

type delivery struct{ id, user string }

func (r *received) add(t *testing.T, body []byte) {
	var ce struct {
		SpecVersion string           `json:"specversion"`
		ID          string           `json:"id"`
		Type        string           `json:"type"`
		Source      string           `json:"source"`
		Subject     string           `json:"subject"`
		Time        time.Time        `json:"time"`
		Data        userattrs.Record `json:"data"`
	}
	if err := json.Unmarshal(body, &ce); err != nil || ce.SpecVersion != "1.0" || ce.Type != events.Type ||
		ce.Source != events.DefaultSource || ce.ID != ce.Data.ID || ce.Subject != ce.Data.User || ce.Time.IsZero() {
		t.Errorf("not a change event: %s (%v)", body, err)
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.records == nil {
		r.records = map[string]userattrs.Record{}
	}
	r.deliveries = append(r.deliveries, delivery{ce.ID, ce.Subject})
	r.records[ce.ID] = ce.Data
}

// firstArrivals returns, per user, the event ids in the order each first
// arrived, and how many deliveries repeated an id.
func (r *received) firstArrivals() (map[string][]string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]bool{}
	order := map[string][]string{}
	dups := 0
	for _, d := range r.deliveries {
		if seen[d.id] {
			dups++
			continue
		}
		seen[d.id] = true
		order[d.user] = append(order[d.user], d.id)
	}
	return order, dups
}

// webhookReceiver is a real HTTP receiver that checks each event's
// signature, and answers 503 while down.
type webhookReceiver struct {
	received
	url  string
	down atomic.Bool
}

func startWebhook(t *testing.T) *webhookReceiver {
	w := &webhookReceiver{}
	// The official Standard Webhooks library checks each delivery.
	verifier, err := standardwebhooks.NewWebhook(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if w.down.Load() {
			rw.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if err := verifier.Verify(body, r.Header); err != nil {
			t.Errorf("an event without a valid signature: %v", err)
			rw.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.add(t, body)
		rw.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	w.url = srv.URL
	return w
}

// histories reads the whole history of each user through the admin API,
// oldest first.
func histories(t *testing.T, base, adminToken string, users []string) map[string][]userattrs.Record {
	out := map[string][]userattrs.Record{}
	for _, u := range users {
		next := "/admin/users/" + url.PathEscape(u) + "/attributes/history?page[size]=200"
		var records []userattrs.Record
		for next != "" {
			status, body := call(t, "GET", base+next, adminToken, "")
			var doc struct {
				Data []struct {
					Attributes userattrs.Record `json:"attributes"`
				} `json:"data"`
				Links map[string]string `json:"links"`
			}
			if status != 200 || json.Unmarshal([]byte(body), &doc) != nil {
				t.Fatalf("history of %s: %d %s", u, status, body)
			}
			for _, d := range doc.Data {
				records = append(records, d.Attributes)
			}
			next = doc.Links["next"]
		}
		slices.Reverse(records)
		out[u] = records
	}
	return out
}

// eventFigures are what the closing note reports of a delivery test.
type eventFigures struct {
	acked, changes, delivered, duplicates, orderViolations, missing int
}

// checkDelivery compares what a sink got with the history: every change
// recorded (every acknowledged one among them) delivered at least once,
// each user's in the order the history records them.
func checkDelivery(t *testing.T, sink string, got *received, history map[string][]userattrs.Record, load ...*reliability.Load) eventFigures {
	t.Helper()
	order, dups := got.firstArrivals()
	var f eventFigures
	f.duplicates = dups
	got.mu.Lock()
	f.delivered = len(got.deliveries)
	got.mu.Unlock()
	for user, records := range history {
		f.changes += len(records)
		want := make([]string, len(records))
		for i, r := range records {
			want[i] = r.ID
		}
		arrived := order[user]
		for _, id := range want {
			if !slices.Contains(arrived, id) {
				f.missing++
			}
		}
		// Order: the first arrivals of the user's events, in the history's
		// order; an event that came before one recorded earlier is a
		// violation.
		pos := map[string]int{}
		for i, id := range want {
			pos[id] = i
		}
		last := -1
		for _, id := range arrived {
			p, ok := pos[id]
			if !ok {
				t.Errorf("%s: an event %s of %s that the history does not record", sink, id, user)
				continue
			}
			if p < last {
				f.orderViolations++
			}
			last = max(last, p)
		}
	}
	if f.missing > 0 || f.orderViolations > 0 {
		t.Errorf("%s: %d of %d changes never delivered, %d order violations", sink, f.missing, f.changes, f.orderViolations)
	}
	// Every acknowledged write has its change in the history, with its
	// key set.
	for _, l := range load {
		f.acked += int(l.Count(204))
	}
	return f
}

// waitDelivered waits until every sink got every change the history holds.
func waitDelivered(t *testing.T, base, adminToken string, users []string, sinks ...*received) map[string][]userattrs.Record {
	deadline := time.Now().Add(90 * time.Second)
	for {
		history := histories(t, base, adminToken, users)
		complete := true
		for _, s := range sinks {
			order, _ := s.firstArrivals()
			for u, records := range history {
				if len(order[u]) < len(records) {
					complete = false
				}
			}
		}
		if complete {
			return history
		}
		if time.Now().After(deadline) {
			t.Fatal("events still undelivered 90 s after the load")
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// connectJetStream connects to the nats-server at url until the test ends.
func connectJetStream(t *testing.T, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// streamEvents reads every message of the JetStream stream, in stream
// order.
func streamEvents(t *testing.T, natsURL string) *received {
	js := connectJetStream(t, natsURL)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stream, err := js.Stream(ctx, events.DefaultStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	got := &received{}
	for n := uint64(0); n < info.State.Msgs; n++ {
		msg, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatalf("message %d of %d: %v", n, info.State.Msgs, err)
		}
		if want := events.Subject(events.DefaultSubject, "x"); !strings.HasPrefix(msg.Subject(), strings.TrimSuffix(want, "x")) {
			t.Errorf("subject %s", msg.Subject())
		}
		got.add(t, msg.Data())
	}
	return got
}

func eventUsers(n int) []string {
	users := make([]string, n)
	for i := range users {
		users[i] = "user-" + strconv.Itoa(i)
	}
	return users
}

// Every change is delivered to NATS JetStream and to a webhook at least
// once and in each user's order, across a kill -9 of the service under
// load and an outage of both sinks; duplicates carry the same id.
func TestEventsSurviveKillAndOutage(t *testing.T) {
	const outage = 15 * time.Second
	dir := t.TempDir()
	ns := startNATS(t)
	hook := startWebhook(t)
	env := []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret}
	scan.Secrets.Add(webhookSecret)
	start := func() *process {
		// The whole history, unbounded, is what every delivery is
		// checked against.
		return startServe(t, dir, env, "--dev", "--data-dir", dir, "--events-nats-url", ns.url, "--events-webhook-url", hook.url,
			"--max-attributes", "100000", "--max-user-bytes", "100000000", "--history-max-records", "0", "--history-max-bytes", "0")
	}
	users := eventUsers(8)
	p := start()
	tokens := tokensFor(t, dir, users...)
	adminToken := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)

	// kill -9 under load.
	current := atomic.Value{}
	current.Store(p.url)
	instances := func() []string { return []string{current.Load().(string)} }
	before := reliability.StartLoad(instances, tokens, 100000, false)
	time.Sleep(1500 * time.Millisecond)
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	before.Finish()
	if before.Count(204) == 0 {
		t.Fatal("no PUT succeeded before the kill")
	}

	// Both sinks down under load, after a restart: for longer than a
	// send's 10 s timeout, so that a publish begun as NATS went away
	// fails rather than waits for its return.
	p = start()
	current.Store(p.url)
	after := reliability.StartLoad(instances, tokens, 100000, false)
	time.Sleep(time.Second)
	hook.down.Store(true)
	ns.stop()
	time.Sleep(outage)
	ns.start()
	hook.down.Store(false)
	time.Sleep(time.Second)
	after.Finish()

	history := waitDelivered(t, p.url, adminToken, users, &hook.received)
	acked, lost := after.CheckAcked(t, p.url, tokens)
	ackedBefore, lostBefore := before.CheckAcked(t, p.url, tokens)
	if lost+lostBefore > 0 {
		t.Fatalf("%d acknowledged changes lost", lost+lostBefore)
	}
	// Every acknowledged key is in the attributes (CheckAcked), and every
	// attribute in a recorded change: the history is complete, so
	// delivering every recorded change delivers every acknowledged one.
	recorded := map[string]bool{}
	for u, records := range history {
		for _, r := range records {
			for k := range r.Set {
				recorded[u+"/"+k] = true
			}
		}
	}
	for _, u := range users {
		_, body := call(t, "GET", p.url+"/admin/users/"+u+"/attributes", adminToken, "")
		var attrs map[string]any
		if err := json.Unmarshal([]byte(body), &attrs); err != nil || len(attrs) == 0 {
			t.Fatalf("attributes of %s: %s", u, body)
		}
		for k := range attrs {
			if !recorded[u+"/"+k] {
				t.Errorf("%s's attribute %s has no record", u, k)
			}
		}
	}
	t.Logf("acknowledged keys checked after the restart: %d", acked+ackedBefore)
	webhook := checkDelivery(t, "webhook", &hook.received, history, before, after)
	stream := checkDelivery(t, "nats", streamEvents(t, ns.url), history, before, after)
	for name, f := range map[string]eventFigures{"webhook": webhook, "NATS JetStream": stream} {
		t.Logf("events (%s) across kill -9 under load and a %v outage of both sinks: %d changes acknowledged, %d recorded, "+
			"%d deliveries, %d duplicates, %d never delivered, %d order violations", name, outage, f.acked, f.changes, f.delivered,
			f.duplicates, f.missing, f.orderViolations)
	}
	_, metrics := call(t, "GET", p.url+"/metrics", "", "")
	for _, m := range []string{"userattrs_events_outbox_depth", "userattrs_events_outbox_oldest_age_seconds",
		`userattrs_events_deliveries_total{result="delivered",sink="webhook"}`, `userattrs_events_deliveries_total{result="failed",sink="nats"}`} {
		if !strings.Contains(metrics, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
}

// Two instances on one PostgreSQL database share one outbox: every change
// through either is delivered once, in each user's order, by one of them.
func TestEventsTwoInstancesShareOutbox(t *testing.T) {
	dbURL := pgtest.Shared(t).NewDatabase(t)
	dir := t.TempDir()
	hook := startWebhook(t)
	env := []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret}
	scan.Secrets.Add(webhookSecret)
	start := func() *process {
		return startServe(t, dir, env, "--dev", "--data-dir", dir, "--store", dbURL, "--events-webhook-url", hook.url,
			"--history-max-records", "0", "--history-max-bytes", "0")
	}
	a, b := start(), start()
	users := eventUsers(6)
	tokens := tokensFor(t, dir, users...)
	adminToken := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)
	load := reliability.StartLoad(func() []string { return []string{a.url, b.url} }, tokens, 60, false)
	load.Wait()
	load.Finish()
	if n := load.Count(204); n != 2*6*60 {
		t.Fatalf("%d of %d PUTs got 204", n, 2*6*60)
	}
	history := waitDelivered(t, a.url, adminToken, users, &hook.received)
	f := checkDelivery(t, "webhook", &hook.received, history, load)
	if f.duplicates != 0 {
		t.Errorf("%d events delivered twice by two instances without a fault", f.duplicates)
	}
	delivered := func(p *process) string {
		_, m := call(t, "GET", p.url+"/metrics", "", "")
		for _, line := range strings.Split(m, "\n") {
			if strings.HasPrefix(line, `userattrs_events_deliveries_total{result="delivered",sink="webhook"}`) {
				return strings.Fields(line)[1]
			}
		}
		return "0"
	}
	da, db := delivered(a), delivered(b)
	if da == "0" || db == "0" {
		t.Errorf("one instance delivered everything: %s and %s", da, db)
	}
	t.Logf("events through two PostgreSQL instances sharing one outbox: %d changes acknowledged, %d recorded, %d deliveries "+
		"(%s by one instance, %s by the other), %d duplicates, %d order violations", f.acked, f.changes, f.delivered, da, db,
		f.duplicates, f.orderViolations)
}

// A delivery of serve verifies with the official Standard Webhooks library
// of another ecosystem (PyPI standardwebhooks), under the new secret of a
// rotation, as a receiver written in Python checks it.
func TestWebhookVerifiedByPythonLibrary(t *testing.T) {
	tools := clientTools(t)
	dir := t.TempDir()
	delivered := make(chan *http.Request, 1)
	bodies := make(chan []byte, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		select {
		case delivered <- r:
			bodies <- body
		default:
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	const rotatedIn = "whsec_dGhlLW5ldy1zZWNyZXQtb2YtYS1yb3RhdGlvbg=="
	env := []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret + "," + rotatedIn}
	scan.Secrets.Add(webhookSecret, rotatedIn)
	p := startServe(t, dir, env, "--dev", "--data-dir", dir, "--events-webhook-url", srv.URL)
	if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", mintToken(t, dir, "--sub", "alice", "--data-dir", dir),
		`{"tos_accepted":"true"}`); status != 204 {
		t.Fatalf("PUT: %d %s", status, body)
	}
	var r *http.Request
	select {
	case r = <-delivered:
	case <-time.After(20 * time.Second):
		t.Fatal("no delivery")
	}
	headers := map[string]string{}
	for _, h := range []string{"webhook-id", "webhook-timestamp", "webhook-signature"} {
		headers[h] = r.Header.Get(h)
	}
	hb, _ := json.Marshal(headers)
	for name, data := range map[string][]byte{"body": <-bodies, "headers.json": hb} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	verify := `import json, os, sys
from standardwebhooks.webhooks import Webhook
body = open(sys.argv[1], "rb").read()
headers = json.load(open(sys.argv[2]))
event = Webhook(os.environ["SECRET"]).verify(body, headers)
try:
    Webhook(os.environ["SECRET"]).verify(body.replace(b"true", b"fals"), headers)
    sys.exit("a changed body verified")
except Exception:
    pass
print(event["type"])
`
	out := runTool(t, dir, []string{"SECRET=" + rotatedIn}, tools["CLIENTS_PYTHON"], "-c", verify,
		filepath.Join(dir, "body"), filepath.Join(dir, "headers.json"))
	if strings.TrimSpace(out) != events.Type {
		t.Fatalf("the Python verifier: %q", out)
	}
}

// The stream the service creates is bounded by age (--events-nats-max-age),
// and a stream deleted while the service runs is created again by the
// next delivery: events go on instead of failing for ever.
func TestNATSStreamBoundedAndRecreated(t *testing.T) {
	dir := t.TempDir()
	ns := startNATS(t)
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir, "--events-nats-url", ns.url, "--events-nats-max-age", "36h")
	tok := mintToken(t, dir, "--sub", "alice", "--data-dir", dir)
	js := connectJetStream(t, ns.url)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// waitFor waits until the service's stream holds n messages.
	waitFor := func(n uint64) jetstream.Stream {
		t.Helper()
		for {
			if stream, err := js.Stream(ctx, events.DefaultStream); err == nil {
				if info, err := stream.Info(ctx); err == nil && info.State.Msgs >= n {
					return stream
				}
			}
			select {
			case <-ctx.Done():
				t.Fatalf("the stream never held %d events", n)
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"a":"1"}`); status != 204 {
		t.Fatal(status)
	}
	info, err := waitFor(1).Info(ctx)
	if err != nil || info.Config.MaxAge != 36*time.Hour || info.Config.Discard != jetstream.DiscardOld {
		t.Fatalf("stream limits: %+v, %v", info.Config, err)
	}
	if err := js.DeleteStream(ctx, events.DefaultStream); err != nil {
		t.Fatal(err)
	}
	if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"a":"2"}`); status != 204 {
		t.Fatal(status)
	}
	msg, err := waitFor(1).GetLastMsgForSubject(ctx, events.Subject(events.DefaultSubject, "alice"))
	if err != nil || !strings.Contains(string(msg.Data), `"a":["2"]`) {
		t.Fatalf("the event after the stream was deleted: %v", err)
	}
}

// With the receiver down, the outbox fills to its bound (--events-outbox-max)
// and no further: past it, changes are refused with 503 outbox-full and
// readiness fails, rather than acknowledged without their events; once the
// receiver is back, every acknowledged change is delivered and changes are
// taken again.
func TestOutboxBound(t *testing.T) {
	dir := t.TempDir()
	hook := startWebhook(t)
	hook.down.Store(true)
	env := []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret}
	scan.Secrets.Add(webhookSecret)
	p := startServe(t, dir, env, "--dev", "--data-dir", dir, "--events-webhook-url", hook.url, "--events-outbox-max", "5")
	tok := mintToken(t, dir, "--sub", "alice", "--data-dir", dir)
	var acked []string
	deadline := time.Now().Add(20 * time.Second)
	for {
		value := "v" + strconv.Itoa(len(acked))
		status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"k":"`+value+`"}`)
		if status == 204 {
			acked = append(acked, value)
		} else if status == 503 && strings.Contains(body, `"code":"outbox-full"`) {
			break
		} else {
			t.Fatalf("PUT with the receiver down: %d %s", status, body)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d changes taken with the receiver down and a bound of 5", len(acked))
		}
		time.Sleep(100 * time.Millisecond)
	}
	// The bound is checked every second: a few changes may pass it in
	// between, never many.
	if len(acked) < 5 || len(acked) > 20 {
		t.Fatalf("%d changes taken before the outbox was full, with a bound of 5", len(acked))
	}
	if status, _ := call(t, "GET", p.url+"/health/readiness", "", ""); status != 503 {
		t.Fatalf("readiness with a full outbox: %d", status)
	}
	waitForLog(t, p, "the outbox is past its bound")
	hook.down.Store(false)
	p.waitReady(t, time.Minute)
	if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tok, `{"k":"after"}`); status != 204 {
		t.Fatalf("PUT once the outbox drained: %d %s", status, body)
	}
	hook.mu.Lock()
	delivered := map[string]bool{}
	for _, r := range hook.records {
		delivered[r.Set["k"][0]] = true
	}
	hook.mu.Unlock()
	for _, v := range acked {
		if !delivered[v] {
			t.Errorf("the acknowledged change k=%s was never delivered", v)
		}
	}
}
