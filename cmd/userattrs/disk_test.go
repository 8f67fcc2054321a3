package main

import (
	"fmt"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/userattrs/userattrs/internal/disktest"
	"github.com/userattrs/userattrs/reliability"
)

// timedCall is call with the time it took; a request with no answer
// within limit is a failure of its own.
func timedCall(t *testing.T, limit time.Duration, method, url, token, body string) (int, time.Duration) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := time.Now()
	resp, err := (&http.Client{Timeout: limit}).Do(req)
	if err != nil {
		t.Errorf("%s %s: no answer within %v: %v", method, url, limit, err)
		return 0, time.Since(start)
	}
	resp.Body.Close()
	return resp.StatusCode, time.Since(start)
}

// A frozen disk costs each request at most the store timeout: writes get
// 503, liveness, metrics and cached reads keep answering, readiness fails
// while a write is stuck, and all comes back by itself after the thaw,
// with every acknowledged write kept.
func TestStalledDisk(t *testing.T) {
	disk := disktest.Freezable(t)
	dir := disk.Dir
	p := startServe(t, dir, nil, "--dev", "--data-dir", dir, "--store-timeout", "1s", "--max-attributes", "1000000", "--max-user-bytes", "1000000000")
	tokens := tokensFor(t, dir, "alice", "bob", "carol", "dave", "erin")
	writers := map[string]string{"bob": tokens["bob"], "dave": tokens["dave"], "erin": tokens["erin"]}
	attrs := p.url + "/user/2025-1/attributes"
	if status, _ := call(t, "PUT", attrs, tokens["alice"], `{"a":"1"}`); status != 204 {
		t.Fatalf("PUT before the freeze: %d", status)
	}
	call(t, "GET", attrs, tokens["alice"], "")

	load := reliability.StartLoad(func() []string { return []string{p.url} }, writers, 100000, true)
	time.Sleep(300 * time.Millisecond)
	disk.Freeze()
	load.Window()
	const bound = 3 * time.Second // the store timeout and a margin
	time.Sleep(2 * time.Second)
	for _, c := range []struct{ what, url, token string }{
		{"liveness", p.url + "/health/liveness", ""}, {"metrics", p.url + "/metrics", ""}, {"a cached read", attrs, tokens["alice"]},
	} {
		if status, took := timedCall(t, 10*time.Second, "GET", c.url, c.token, ""); status != 200 || took > time.Second {
			t.Errorf("%s on a frozen disk: %d after %v", c.what, status, took)
		}
	}
	if status, took := timedCall(t, 10*time.Second, "GET", attrs, tokens["carol"], ""); (status != 200 && status != 503) || took > bound {
		t.Errorf("an uncached read on a frozen disk: %d after %v", status, took)
	}
	if status, _ := timedCall(t, 10*time.Second, "GET", p.url+"/health/readiness", "", ""); status != 503 {
		t.Errorf("readiness on a frozen disk: %d, want 503", status)
	}
	load.EndWindow()

	disk.Thaw()
	thawed := time.Now()
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, _ := timedCall(t, 10*time.Second, "GET", p.url+"/health/readiness", "", "")
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("not ready 10s after the thaw: %d", status)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if status, _ := call(t, "PUT", attrs, tokens["bob"], `{"after":"thaw"}`); status != 204 {
		t.Fatalf("PUT after the thaw: %d", status)
	}
	recovered := time.Since(thawed)
	time.Sleep(300 * time.Millisecond)
	load.Finish()
	load.CheckAnswers(t, bound, true)
	if load.WindowCount(503) == 0 {
		t.Error("no write got 503 on the frozen disk")
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	again := startServe(t, dir, nil, "--dev", "--data-dir", dir)
	for user, want := range map[string]string{"alice": `"a":"1"`, "bob": `"after":"thaw"`} {
		if _, body := call(t, "GET", again.url+"/user/2025-1/attributes", tokens[user], ""); !strings.Contains(body, want) {
			t.Errorf("%s after a restart: %s, want %s", user, body, want)
		}
	}
	acked, lost := load.CheckAcked(t, again.url, writers)
	reliability.Report(t.Logf, reliability.Row{Scenario: "SQLite on a frozen disk (fsfreeze), then kill -9 and restart",
		Answers: load.Answers(), Acked: acked, Lost: lost, Recovery: &recovered, Note: "recovery counted from the thaw"})
}

// kill -9 under a storm of writers loses nothing that got a 204, on the
// embedded store.
func TestKillUnderWriteStorm(t *testing.T) {
	dir := t.TempDir()
	users := make([]string, 16)
	for i := range users {
		users[i] = fmt.Sprintf("user%d", i)
	}
	killUnderLoad(t, "kill -9 under 16 writers (SQLite)", dir, users, func() *process {
		return startServe(t, dir, nil, "--dev", "--data-dir", dir, "--max-attributes", "1000000", "--max-user-bytes", "1000000000")
	})
}

// killUnderLoad starts an instance, kills it with SIGKILL a second into
// the writes of users, starts another and finds every write acknowledged
// before the kill. The users' tokens are minted by the key in dir, which
// the first start creates.
func killUnderLoad(t *testing.T, scenario, dir string, users []string, start func() *process) {
	p := start()
	tokens := tokensFor(t, dir, users...)
	load := reliability.StartLoad(func() []string { return []string{p.url} }, tokens, 100000, false)
	time.Sleep(time.Second)
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)
	load.Finish()
	if load.Count(204) == 0 {
		t.Fatal("no PUT succeeded before the kill")
	}
	acked, lost := load.CheckAcked(t, start().url, tokens)
	reliability.Report(t.Logf, reliability.Row{Scenario: scenario, Answers: load.Answers(), Acked: acked, Lost: lost})
}
