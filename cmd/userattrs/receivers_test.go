package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/reliability"
)

// receiver is a real webhook receiver that checks each delivery's
// signature with the official Standard Webhooks library, notes how long
// after its change each event arrived, and answers as its refuse says.
type receiver struct {
	received
	url string
	mu  sync.Mutex
	// latency of each first arrival, by user
	latency map[string][]time.Duration
	seen    map[string]bool
	// refuse, when set, picks the answer to a delivery; 0 takes it.
	refuse atomic.Pointer[func(r *http.Request, user, value string) int]
}

func startReceiver(t *testing.T) *receiver {
	rc := &receiver{latency: map[string][]time.Duration{}, seen: map[string]bool{}}
	verifier, err := standardwebhooks.NewWebhook(webhookSecret)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if err := verifier.Verify(body, r.Header); err != nil {
			t.Errorf("an event without a valid signature: %v", err)
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		var ce struct {
			ID      string `json:"id"`
			Subject string `json:"subject"`
			Data    struct {
				Time time.Time           `json:"time"`
				Set  map[string][]string `json:"set"`
			} `json:"data"`
		}
		json.Unmarshal(body, &ce)
		if f := rc.refuse.Load(); f != nil {
			if status := (*f)(r, ce.Subject, firstValue(ce.Data.Set)); status != 0 {
				w.WriteHeader(status)
				return
			}
		}
		rc.add(t, body)
		rc.mu.Lock()
		if !rc.seen[ce.ID] {
			rc.seen[ce.ID] = true
			rc.latency[ce.Subject] = append(rc.latency[ce.Subject], time.Since(ce.Data.Time))
		}
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	rc.url = srv.URL
	return rc
}

func firstValue(set map[string][]string) string {
	for _, v := range set {
		if len(v) > 0 {
			return v[0]
		}
	}
	return ""
}

// latencies returns the arrival latencies of every user's events but
// except's, sorted.
func (rc *receiver) latencies(except string) []time.Duration {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var all []time.Duration
	for u, l := range rc.latency {
		if u != except {
			all = append(all, l...)
		}
	}
	slices.Sort(all)
	return all
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))]
}

// writeSteadily has each user write one attribute every interval until
// stop, and returns how many writes were acknowledged.
func writeSteadily(t *testing.T, url string, tokens map[string]string, interval, duration time.Duration) int {
	var acked atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(duration)
	client := &http.Client{Timeout: 10 * time.Second}
	for user, tok := range tokens {
		wg.Go(func() {
			tick := time.NewTicker(interval)
			defer tick.Stop()
			for n := 0; time.Now().Before(stop); n++ {
				req, _ := http.NewRequest("PUT", url+"/user/2024-3/attributes", strings.NewReader(`{"k":"`+user+"-"+strconv.Itoa(n)+`"}`))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					t.Errorf("PUT: %v", err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != 204 {
					t.Errorf("PUT: %d", resp.StatusCode)
					return
				}
				acked.Add(1)
				<-tick.C
			}
		})
	}
	wg.Wait()
	return int(acked.Load())
}

// metric reads one sample of the process's metrics, 0 when absent.
func metric(t *testing.T, p *process, name string) float64 {
	_, body := call(t, "GET", p.url+"/metrics", "", "")
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, name+" "); ok {
			v, _ := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v
		}
	}
	return 0
}

// reliabilityRun is how long a scenario runs: short under make test, long
// under make reliability.
func reliabilityRun(short, long time.Duration) time.Duration {
	if os.Getenv(reliability.EnvReport) != "" {
		return long
	}
	return short
}

// A receiver that hangs on one user's events delays only that user's:
// while it hangs, every other user's event arrives, in order, and (under
// make reliability) within a second; once it answers, the slow user's
// events follow in order. On SQLite and on PostgreSQL, where the slow user
// shares its part of the outbox with a sixteenth of the users.
func TestSlowReceiver(t *testing.T) {
	duration := reliabilityRun(10*time.Second, time.Minute)
	for _, store := range []string{"SQLite", "PostgreSQL"} {
		t.Run(store, func(t *testing.T) {
			dir := t.TempDir()
			rc := startReceiver(t)
			gate := make(chan struct{})
			hang := func(r *http.Request, user, _ string) int {
				if user != "slow" {
					return 0
				}
				select {
				case <-gate:
					return 0
				case <-r.Context().Done():
					return http.StatusServiceUnavailable
				}
			}
			rc.refuse.Store(&hang)
			scan.Secrets.Add(webhookSecret)
			// The whole history, to compare every delivery with.
			args := []string{"--dev", "--data-dir", dir, "--events-webhook-url", rc.url, "--history-max-records", "0", "--history-max-bytes", "0"}
			if store == "PostgreSQL" {
				args = append(args, "--store", pgtest.Shared(t).NewDatabase(t))
			}
			p := startServe(t, dir, []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret}, args...)
			users := append(eventUsers(16), "slow")
			tokens := tokensFor(t, dir, users...)
			admin := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)
			acked := writeSteadily(t, p.url, tokens, 50*time.Millisecond, duration)
			others := users[:16]
			waitDelivered(t, p.url, admin, others, &rc.received)
			if order, _ := rc.firstArrivals(); len(order["slow"]) != 0 {
				t.Fatalf("%d of the slow user's events arrived while its receiver hung", len(order["slow"]))
			}
			lat := rc.latencies("slow")
			p50, p99, worst := percentile(lat, 0.5), percentile(lat, 0.99), lat[len(lat)-1]
			if os.Getenv(reliability.EnvReport) != "" && p99 > time.Second {
				t.Errorf("other users' events arrived %v after their change (p99), more than a second", p99)
			}
			close(gate)
			history := waitDelivered(t, p.url, admin, users, &rc.received)
			f := checkDelivery(t, "webhook", &rc.received, history)
			reliability.Report(t.Logf, reliability.Row{
				Scenario: fmt.Sprintf("a receiver hanging on one user's events for %v, 17 users writing 20/s each (%s)", duration, store),
				Answers:  map[int]int64{204: int64(acked)}, Acked: acked, Lost: f.missing,
				Note: fmt.Sprintf("other users' %d events arrived p50 %v, p99 %v, max %v after their change; "+
					"the slow user's %d followed once it answered; %d order violations",
					len(lat), p50.Round(time.Millisecond), p99.Round(time.Millisecond), worst.Round(time.Millisecond),
					len(history["slow"]), f.orderViolations),
			})
		})
	}
}

// With the receiver down, the outbox holds every change's event, each
// user retried on its own backoff; once it is back, every event arrives in
// order and none is parked. make reliability keeps it down 10 minutes, at
// 100 changes a second, and reports the outbox's size and its drain time.
func TestReceiverDown(t *testing.T) {
	outage := reliabilityRun(15*time.Second, 10*time.Minute)
	dir := t.TempDir()
	rc := startReceiver(t)
	down := func(*http.Request, string, string) int { return http.StatusServiceUnavailable }
	rc.refuse.Store(&down)
	scan.Secrets.Add(webhookSecret)
	p := startServe(t, dir, []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret}, "--dev", "--data-dir", dir,
		"--events-webhook-url", rc.url, "--history-max-records", "0", "--history-max-bytes", "0")
	users := eventUsers(10)
	tokens := tokensFor(t, dir, users...)
	admin := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)
	acked := writeSteadily(t, p.url, tokens, 100*time.Millisecond, outage)
	time.Sleep(2 * time.Second) // the gauges' next reading
	depth, failed := metric(t, p, "userattrs_events_outbox_depth"), metric(t, p, `userattrs_events_deliveries_total{result="failed",sink="webhook"}`)
	if int(depth) != acked {
		t.Errorf("the outbox holds %v events after %d acknowledged changes", depth, acked)
	}
	size := dirSize(t, dir)
	rc.refuse.Store(nil)
	back := time.Now()
	// Drained: the outbox gauge, read every second, at 0.
	for metric(t, p, "userattrs_events_outbox_depth") > 0 {
		if time.Since(back) > 5*time.Minute {
			t.Fatalf("the outbox still holds %v events 5 minutes after the receiver came back", metric(t, p, "userattrs_events_outbox_depth"))
		}
		time.Sleep(200 * time.Millisecond)
	}
	drained := time.Since(back)
	history := waitDelivered(t, p.url, admin, users, &rc.received)
	f := checkDelivery(t, "webhook", &rc.received, history)
	if parked := metric(t, p, "userattrs_events_parked_total"); parked != 0 {
		t.Errorf("%v events parked after an outage of %v", parked, outage)
	}
	reliability.Report(t.Logf, reliability.Row{
		Scenario: fmt.Sprintf("the receiver down for %v, 10 users writing 10/s each (SQLite)", outage),
		Answers:  map[int]int64{204: int64(acked)}, Acked: acked, Lost: f.missing, Recovery: &drained,
		Note: fmt.Sprintf("outbox %v events, data directory %.1f MiB, %v failed attempts during the outage; "+
			"drained in %v once the receiver was back; %d duplicates, %d order violations",
			depth, float64(size)/(1<<20), failed, drained.Round(100*time.Millisecond), f.duplicates, f.orderViolations),
	})
}

// An event the receiver keeps refusing is parked after
// --events-park-attempts: one ERROR line and the metrics say so, the admin
// API lists it with why, its user's later events go on, and once it is
// sent again it arrives; sending it again twice finds nothing.
func TestParkedEvents(t *testing.T) {
	dir := t.TempDir()
	rc := startReceiver(t)
	var poisoned atomic.Bool
	poisoned.Store(true)
	refuse := func(_ *http.Request, _, value string) int {
		if value == "poison" && poisoned.Load() {
			return http.StatusUnprocessableEntity
		}
		return 0
	}
	rc.refuse.Store(&refuse)
	scan.Secrets.Add(webhookSecret)
	p := startServe(t, dir, []string{"USERATTRS_EVENTS_WEBHOOK_SECRET=" + webhookSecret}, "--dev", "--data-dir", dir,
		"--events-webhook-url", rc.url, "--events-park-attempts", "3")
	tokens := tokensFor(t, dir, "alice", "bob")
	admin := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)
	for _, w := range []struct{ user, value string }{{"alice", "poison"}, {"alice", "after"}, {"bob", "fine"}} {
		if status, body := call(t, "PUT", p.url+"/user/2024-3/attributes", tokens[w.user], `{"k":"`+w.value+`"}`); status != 204 {
			t.Fatalf("PUT: %d %s", status, body)
		}
	}
	type page struct {
		Data []struct {
			ID         string `json:"id"`
			Attributes struct {
				User     string `json:"user"`
				Attempts int    `json:"attempts"`
				Reason   string `json:"reason"`
			} `json:"attributes"`
		} `json:"data"`
	}
	parked := func() page {
		t.Helper()
		status, body := call(t, "GET", p.url+"/admin/events/parked", admin, "")
		var doc page
		if status != 200 || json.Unmarshal([]byte(body), &doc) != nil {
			t.Fatalf("parked events: %d %s", status, body)
		}
		return doc
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(parked().Data) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("nothing parked after 30 s\n%s", p.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	doc := parked()
	if len(doc.Data) != 1 || doc.Data[0].Attributes.User != "alice" || doc.Data[0].Attributes.Attempts != 3 ||
		!strings.Contains(doc.Data[0].Attributes.Reason, "422") {
		t.Fatalf("parked: %+v", doc)
	}
	id := doc.Data[0].ID
	history := waitDelivered(t, p.url, admin, []string{"bob"}, &rc.received)
	if order, _ := rc.firstArrivals(); len(order["alice"]) != 1 || len(history["bob"]) != 1 {
		t.Fatalf("alice's later event and bob's did not go on past the parked one: %v", order)
	}
	waitForLog(t, p, "is parked")
	if n := strings.Count(p.logs.String(), `"level":"ERROR"`); n != 1 {
		t.Errorf("%d ERROR lines, want the one of the parking:\n%s", n, p.logs.String())
	}
	time.Sleep(1500 * time.Millisecond) // the gauges' next reading
	if total, now := metric(t, p, "userattrs_events_parked_total"), metric(t, p, "userattrs_events_parked"); total != 1 || now != 1 {
		t.Errorf("metrics: %v parked in all, %v parked now", total, now)
	}
	if status, _ := call(t, "POST", p.url+"/admin/events/parked/"+id+"/resend", tokens["bob"], ""); status != 403 {
		t.Errorf("a user's token sent a parked event again: %d", status)
	}
	poisoned.Store(false)
	if status, body := call(t, "POST", p.url+"/admin/events/parked/"+id+"/resend", admin, ""); status != 202 {
		t.Fatalf("resend: %d %s", status, body)
	}
	history = waitDelivered(t, p.url, admin, []string{"alice", "bob"}, &rc.received)
	if len(history["alice"]) != 2 || len(parked().Data) != 0 {
		t.Fatalf("after resending: %d of alice's changes, %d still parked", len(history["alice"]), len(parked().Data))
	}
	if status, body := call(t, "POST", p.url+"/admin/events/parked/"+id+"/resend", admin, ""); status != 404 ||
		!strings.Contains(body, "event-not-found") {
		t.Errorf("resending an event no longer parked: %d %s", status, body)
	}
}
