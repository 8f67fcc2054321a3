package deploy

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// The rules load, and their unit tests (userattrs.rules_test.yaml) pass:
// every alert fires where it should and stays quiet where it should not.
func TestPrometheusRules(t *testing.T) {
	promtool := tools(t)["OPS_PROMTOOL"]
	out := run(t, promtool, "check", "rules", "deploy/prometheus/userattrs.rules.yaml")
	t.Log(strings.TrimSpace(out))
	out = run(t, promtool, "test", "rules", "deploy/prometheus/userattrs.rules_test.yaml")
	t.Log(strings.TrimSpace(out))

	// Every alert has its summary, description and a runbook section that
	// exists in docs/runbook.md.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert       string            `json:"alert"`
				Annotations map[string]string `json:"annotations"`
			} `json:"rules"`
		} `json:"groups"`
	}
	readYAML(t, "deploy/prometheus/userattrs.rules.yaml", &rules)
	runbook, err := os.ReadFile(filepath.Join(repoRoot(), "docs", "runbook.md"))
	if err != nil {
		t.Fatal(err)
	}
	alerts := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			if r.Alert == "" {
				continue
			}
			alerts++
			a := r.Annotations
			if a["summary"] == "" || a["description"] == "" {
				t.Errorf("%s: no summary or description", r.Alert)
			}
			_, anchor, ok := strings.Cut(a["runbook_url"], "/docs/runbook.md#")
			if !ok || !hasHeading(string(runbook), anchor) {
				t.Errorf("%s: runbook_url %q names no section of docs/runbook.md", r.Alert, a["runbook_url"])
			}
		}
	}
	if alerts < 12 {
		t.Errorf("%d alerts, want the 12 of the issue at least", alerts)
	}
}

// hasHeading reports whether markdown has a heading whose GitHub anchor is
// anchor.
func hasHeading(markdown, anchor string) bool {
	for _, line := range strings.Split(markdown, "\n") {
		if !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.ToLower(strings.TrimSpace(strings.TrimLeft(line, "#")))
		slug := regexp.MustCompile(`[^a-z0-9 _-]`).ReplaceAllString(title, "")
		if strings.ReplaceAll(slug, " ", "-") == anchor {
			return true
		}
	}
	return false
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot(), path))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

// dashboard is what the test reads of deploy/grafana/userattrs.json.
type dashboard struct {
	Panels []struct {
		ID      int    `json:"id"`
		Title   string `json:"title"`
		Type    string `json:"type"`
		Targets []struct {
			RefID string `json:"refId"`
			Expr  string `json:"expr"`
		} `json:"targets"`
	} `json:"panels"`
}

// Grafana cannot run here: every query of the dashboard is checked by
// promtool as a recording rule, with the dashboard's variables in place,
// and every metric the dashboard and the rules name must be one a real
// instance exposes after a workload that touches every part.
func TestDashboard(t *testing.T) {
	promtool := tools(t)["OPS_PROMTOOL"]
	b, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "grafana", "userattrs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	vars := strings.NewReplacer("$__rate_interval", "5m", "$job", ".*", "$instance", ".*")
	type rule struct {
		Record string `json:"record"`
		Expr   string `json:"expr"`
	}
	var rules []rule
	var exprs []string
	sections := map[string]bool{}
	for _, p := range d.Panels {
		if p.Type == "row" {
			sections[p.Title] = true
		}
		for _, target := range p.Targets {
			expr := vars.Replace(target.Expr)
			exprs = append(exprs, expr)
			rules = append(rules, rule{Record: fmt.Sprintf("dashboard:panel%d_%s", p.ID, strings.ToLower(target.RefID)), Expr: expr})
		}
	}
	for _, want := range []string{"Requests", "Store", "Read cache", "Tokens", "Change events", "Go runtime"} {
		if !sections[want] {
			t.Errorf("the dashboard has no %q row", want)
		}
	}
	if len(rules) < 20 {
		t.Fatalf("%d queries in the dashboard", len(rules))
	}
	out, err := json.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "dashboard.rules.json")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(run(t, promtool, "check", "rules", file)))

	// The names: from the dashboard and from the rules.
	rulesFile, err := os.ReadFile(filepath.Join(repoRoot(), "deploy", "prometheus", "userattrs.rules.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	names := metricNames(append(exprs, string(rulesFile)))
	exposed := scrapeAfterWorkload(t)
	var missing []string
	for _, name := range names {
		if !exposed[name] {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		t.Errorf("metrics named in the dashboard or the rules that a running instance does not expose: %v", missing)
	}
	t.Logf("%d queries, %d metric names, all exposed", len(rules), len(names))
}

// metricNames are the metric names the queries use: the service's, Go's
// and the process's.
func metricNames(queries []string) []string {
	re := regexp.MustCompile(`\b(?:userattrs|go|process)_[a-z0-9_]+\b`)
	seen := map[string]bool{}
	for _, q := range queries {
		for _, n := range re.FindAllString(q, -1) {
			seen[n] = true
		}
	}
	names := make([]string, 0, len(seen))
	for n := range seen {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// scrapeAfterWorkload runs an instance with events to a webhook, writes,
// reads, sends bad requests until the refusal limit answers 429, and
// returns the names of the series /metrics then shows.
func scrapeAfterWorkload(t *testing.T) map[string]bool {
	t.Helper()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer hook.Close()
	s := startService(t, nil, "--events-webhook-url", hook.URL,
		"--events-webhook-secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	tok := s.token(t, "dashboard-user")
	attrs := s.url + "/user/2025-1/attributes"
	if status, body := do(t, "PUT", attrs, tok, `{"tos_accepted":"true"}`); status != http.StatusNoContent {
		t.Fatalf("PUT: %d %s", status, body)
	}
	for range 3 {
		if status, body := do(t, "GET", attrs, tok, ""); status != http.StatusOK {
			t.Fatalf("GET: %d %s", status, body)
		}
	}
	limited := false
	for range 60 {
		if status, _ := do(t, "PUT", attrs, tok, `{"a":`); status == http.StatusTooManyRequests {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("60 malformed bodies in a row never met the refusal limit")
	}
	do(t, "GET", s.url+"/health/readiness", "", "")
	// The change event is delivered before the outbox metrics are read.
	var metrics string
	for range 100 {
		_, metrics = do(t, "GET", s.url+"/metrics", "", "")
		if strings.Contains(metrics, `userattrs_events_deliveries_total{result="delivered",sink="webhook"} 1`) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	exposed := map[string]bool{}
	for _, line := range strings.Split(metrics, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		exposed[name] = true
	}
	return exposed
}
