package main

import (
	"strings"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/pgtest"
	"github.com/userattrs/userattrs/reliability"
)

// The service given both hosts of a primary and its synchronous standby
// rides out the primary's crash: during the failover requests get 503
// within the store timeout (never 501, never a hang), it serves writes
// again by itself once the standby is promoted, and every merge
// acknowledged with 204 is on the new primary.
func TestPostgresFailover(t *testing.T) {
	pair := pgtest.StartPair(t)
	dir := t.TempDir()
	p := startOnPostgres(t, dir, pair.URL(), "--store-timeout", "2s", "--max-attributes", "1000000", "--max-user-bytes", "1000000000")
	tokens := tokensFor(t, dir, "alice", "bob", "carol", "dave")
	load := reliability.StartLoad(func() []string { return []string{p.url} }, tokens, 100000, false)
	time.Sleep(time.Second)

	if err := pair.Primary.Kill(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // the outage, before an operator or a manager promotes
	if status, took := timedCall(t, 10*time.Second, "GET", p.url+"/health/readiness", "", ""); status != 503 || took > 3*time.Second {
		t.Errorf("readiness with the primary gone: %d after %v, want 503", status, took)
	}
	promoted := time.Now()
	if err := pair.Standby.Promote(); err != nil {
		t.Fatal(err)
	}
	var recovered time.Duration
	for {
		if status, _ := call(t, "PUT", p.url+"/user/2024-3/attributes", tokens["alice"], `{"after":"failover"}`); status == 204 {
			recovered = time.Since(promoted)
			break
		}
		if time.Since(promoted) > 60*time.Second {
			t.Fatal("no write succeeded within 60 s of the promotion")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Second) // writers succeed again
	load.Finish()

	load.CheckOutage(t, 4*time.Second)
	n, lost := load.CheckAcked(t, p.url, tokens)
	if status, body := call(t, "GET", p.url+"/user/2025-1/attributes", tokens["alice"], ""); !strings.Contains(body, `"after":"failover"`) {
		t.Fatalf("after the failover: %d %s", status, body)
	}
	reliability.Report(t.Logf, reliability.Row{Scenario: "PostgreSQL failover: primary killed -9, standby promoted",
		Answers: load.Answers(), Acked: n, Lost: lost, Recovery: &recovered, Note: "recovery counted from the promotion"})
}
