// Package reliability holds what the fault, failover and overload
// scenarios report: one row each, which `make reliability` prints as one
// table. The scenarios themselves are tests (this package's, and those of
// cmd/userattrs that run the binary); in CI they assert losses and
// statuses, never timings.
package reliability

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"time"
)

// EnvReport names the file rows are appended to, one JSON object a line;
// unset, rows are only logged.
const EnvReport = "USERATTRS_RELIABILITY_REPORT"

// Row is one scenario's outcome.
type Row struct {
	Scenario string         `json:"scenario"`
	Answers  map[int]int64  `json:"answers"` // status -> count; 0 for no answer
	Acked    int            `json:"acked"`   // writes acknowledged with 204
	Lost     int            `json:"lost"`    // of those, missing afterwards
	Recovery *time.Duration `json:"recovery,omitempty"`
	Note     string         `json:"note,omitempty"`
}

// Requests is the number of requests the scenario sent.
func (r Row) Requests() int64 {
	var n int64
	for _, c := range r.Answers {
		n += c
	}
	return n
}

var mu sync.Mutex

// Report logs the row and appends it to the report file, if one is named.
func Report(logf func(string, ...any), r Row) error {
	logf("%s", Format([]Row{r}))
	path := os.Getenv(EnvReport)
	if path == "" {
		return nil
	}
	mu.Lock()
	defer mu.Unlock()
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	return json.NewEncoder(f).Encode(r)
}

// Format writes rows as a Markdown table.
func Format(rows []Row) string {
	var b strings.Builder
	b.WriteString("| scenario | requests | answers | writes acknowledged | writes lost | recovered after |\n")
	b.WriteString("|---|---:|---|---:|---:|---:|\n")
	for _, r := range rows {
		statuses := make([]int, 0, len(r.Answers))
		for s := range r.Answers {
			statuses = append(statuses, s)
		}
		sort.Ints(statuses)
		var answers []string
		for _, s := range statuses {
			name := fmt.Sprint(s)
			if s == 0 {
				name = "none"
			}
			answers = append(answers, fmt.Sprintf("%s: %d", name, r.Answers[s]))
		}
		recovery := "–"
		if r.Recovery != nil {
			recovery = fmt.Sprintf("%.1f s", r.Recovery.Seconds())
		}
		scenario := r.Scenario
		if r.Note != "" {
			scenario += " (" + r.Note + ")"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %d | %s |\n", scenario, r.Requests(), strings.Join(answers, ", "), r.Acked, r.Lost, recovery)
	}
	return b.String()
}
