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

// Eight clients sending bodies of 4,000 bad members cost other users'
// writes little: checking stops at the 100th violation. The row reports
// the rate of other users' PUTs without the flood and with it; make
// reliability also holds the second to at least half the first.
func TestInvalidBodyFlood(t *testing.T) {
	dir := t.TempDir()
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir)
	users := make([]string, 8)
	for i := range users {
		users[i] = "writer" + strconv.Itoa(i)
	}
	tokens := tokensFor(t, dir, append(users, "flooder")...)
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
	put := func(tok, body string) int {
		req, _ := http.NewRequest("PUT", p.url+"/user/2024-3/attributes", strings.NewReader(body))
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
	// and returns the writers' acknowledged PUTs per second.
	rate := func(flooders int, d time.Duration) float64 {
		var acked atomic.Int64
		stop := time.Now().Add(d)
		var wg sync.WaitGroup
		for i, u := range users {
			wg.Go(func() {
				for n := 0; time.Now().Before(stop); n++ {
					if put(tokens[u], `{"n":"`+strconv.Itoa(i)+"-"+strconv.Itoa(n)+`"}`) == 204 {
						acked.Add(1)
					}
				}
			})
		}
		for range flooders {
			wg.Go(func() {
				for time.Now().Before(stop) {
					if status := put(tokens["flooder"], bad.String()); status != 422 {
						t.Errorf("a body of 4,000 bad members: %d", status)
						return
					}
				}
			})
		}
		wg.Wait()
		return float64(acked.Load()) / d.Seconds()
	}
	quiet := rate(0, 5*time.Second)
	flooded := rate(8, 5*time.Second)
	if os.Getenv(reliability.EnvReport) != "" && flooded < quiet/2 {
		t.Errorf("other users' PUTs: %.0f/s under the flood, %.0f/s without: less than half", flooded, quiet)
	}
	reliability.Report(t.Logf, reliability.Row{
		Scenario: "8 clients sending bodies of 4,000 bad members (SQLite)",
		Note:     fmt.Sprintf("other users' PUTs %.0f/s without the flood, %.0f/s with it (%.2f)", quiet, flooded, flooded/quiet),
	})
}
