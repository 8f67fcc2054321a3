package main

import (
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/userattrs/userattrs/reliability"
)

// One user's token, writing a 2 KB attribute as fast as 16 connections
// can, fills neither the history nor the disk: the history keeps its
// bounds (1,000 records and 1 MiB), and the database stops growing. The
// row of `make reliability` runs 60 s; make test runs 10 s.
func TestUserWritingFlatOut(t *testing.T) {
	duration := 10 * time.Second
	if os.Getenv(reliability.EnvReport) != "" {
		duration = time.Minute
	}
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir)
	tok := mintToken(t, dir, "--sub", "mallory", "--data-dir", dir)
	admin := mintToken(t, dir, "--sub", "backend", "--client", "backend", "--scope", "user:attributes:admin", "--data-dir", dir)
	client := &http.Client{Timeout: 10 * time.Second}
	var acked, refused atomic.Int64
	var seq atomic.Int64
	stop := time.Now().Add(duration)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for time.Now().Before(stop) {
				n := seq.Add(1)
				body := `{"blob":"` + strconv.FormatInt(n, 10) + strings.Repeat("x", 2000) + `"}`
				req, _ := http.NewRequest("PUT", p.url+"/user/2024-3/attributes", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+tok)
				req.Header.Set("Content-Type", "application/json")
				resp, err := client.Do(req)
				if err != nil {
					refused.Add(1)
					continue
				}
				resp.Body.Close()
				if resp.StatusCode == 204 {
					acked.Add(1)
				} else {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	records := histories(t, p.url, admin, []string{"mallory"})["mallory"]
	var recordBytes int
	for _, r := range records {
		recordBytes += len(r.Set["blob"][0])
	}
	if len(records) > 1000 || recordBytes > 1<<20 {
		t.Errorf("the history kept %d records, %d bytes of values, past its bounds", len(records), recordBytes)
	}
	if acked.Load() < 1000 {
		t.Errorf("only %d changes acknowledged in %v: the bound was not reached, so not tested", acked.Load(), duration)
	}
	size := dirSize(t, dir)
	// The records (1 MiB), the user's row, SQLite's pages freed for reuse
	// and the WAL: a few MiB, whatever the duration; without the bound, a
	// minute of this wrote hundreds of MiB.
	if size > 32<<20 {
		t.Errorf("the data directory holds %d MiB after %v", size>>20, duration)
	}
	reliability.Report(t.Logf, reliability.Row{
		Scenario: fmt.Sprintf("one user writing a 2 KB attribute flat out for %v (SQLite)", duration),
		Answers:  map[int]int64{204: acked.Load(), 503: refused.Load()}, Acked: int(acked.Load()),
		Note: fmt.Sprintf("history kept %d records; data directory %.1f MiB, of which 4 MiB is the reserve",
			len(records), float64(size)/(1<<20)),
	})
}

// dirSize is the bytes of the files in dir, as the disk holds them.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var total int64
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			total += fi.Size()
		}
	}
	return total
}

// Eight clients of one user sending bodies of 4,000 bad members cost
// other users' writes little. Checking stops at the 100th violation; and
// past the user's budget of refused requests (10 a second, bursts of 20)
// its requests are 429 before their bodies are read or checked. The row
// reports the rate of other users' PUTs without the flood and with it,
// with the budget off and on; make reliability also holds the second to at
// least half the first with the defaults.
func TestInvalidBodyFlood(t *testing.T) {
	users := make([]string, 8)
	for i := range users {
		users[i] = "writer" + strconv.Itoa(i)
	}
	var bad strings.Builder
	bad.WriteString("{")
	for i := range 4000 {
		if i > 0 {
			bad.WriteString(",")
		}
		fmt.Fprintf(&bad, `"k%d":1`, i)
	}
	bad.WriteString("}")
	client := &http.Client{Timeout: 10 * time.Second}
	put := func(url, tok, body string) int {
		req, _ := http.NewRequest("PUT", url+"/user/2024-3/attributes", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := client.Do(req)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	// rate runs the writers, and flooders bad bodies beside them, for d,
	// and returns the writers' acknowledged PUTs per second and the
	// flooders' answers.
	rate := func(url string, tokens map[string]string, flooders int, d time.Duration) (float64, map[int]int64) {
		var acked atomic.Int64
		var mu sync.Mutex
		answers := map[int]int64{}
		stop := time.Now().Add(d)
		var wg sync.WaitGroup
		for i, u := range users {
			wg.Go(func() {
				for n := 0; time.Now().Before(stop); n++ {
					if put(url, tokens[u], `{"n":"`+strconv.Itoa(i)+"-"+strconv.Itoa(n)+`"}`) == 204 {
						acked.Add(1)
					}
				}
			})
		}
		for range flooders {
			wg.Go(func() {
				for time.Now().Before(stop) {
					status := put(url, tokens["flooder"], bad.String())
					mu.Lock()
					answers[status]++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		return float64(acked.Load()) / d.Seconds(), answers
	}
	var note []string
	for _, budget := range []string{"0", ""} {
		dir := t.TempDir()
		args := []string{"--dev", "--data-dir", dir}
		if budget != "" {
			args = append(args, "--rate-limit-refused-per-user", budget)
		}
		p := startServe(t, dir, nil, args...)
		tokens := tokensFor(t, dir, append(users, "flooder")...)
		const d = 5 * time.Second
		quiet, _ := rate(p.url, tokens, 0, d)
		flooded, answers := rate(p.url, tokens, 8, d)
		checked := answers[422]
		if budget == "0" {
			if answers[422] == 0 || len(answers) != 1 {
				t.Errorf("without the budget, the flood's answers: %v, want 422 only", answers)
			}
			note = append(note, fmt.Sprintf("budget off: other users' PUTs %.0f/s without the flood, %.0f/s with it (%.2f)",
				quiet, flooded, flooded/quiet))
			continue
		}
		// 20 at once, 10 a second after, and those in flight when the
		// bucket ran out.
		if checked > 20+10*int64(d/time.Second)+16 || answers[429] == 0 || len(answers) != 2 {
			t.Errorf("with the budget, the flood's answers: %v, want at most %d of them checked (422) and the rest 429",
				answers, 20+10*int(d/time.Second)+16)
		}
		if os.Getenv(reliability.EnvReport) != "" && flooded < quiet/2 {
			t.Errorf("other users' PUTs: %.0f/s under the flood, %.0f/s without: less than half", flooded, quiet)
		}
		note = append(note, fmt.Sprintf("defaults: %.0f/s without, %.0f/s with it (%.2f); the flood got %d answers 422 and %d 429",
			quiet, flooded, flooded/quiet, answers[422], answers[429]))
	}
	reliability.Report(t.Logf, reliability.Row{
		Scenario: "8 clients of one user sending bodies of 4,000 bad members (SQLite)",
		Note:     strings.Join(note, "; "),
	})
}
